package sessioncache_test

import (
	"context"
	"testing"
	"time"

	"vetvault/identity/sessioncache"
)

// The benchmarks use an AAL2 session registered through Kratos's API
// flows. docs/benchmarks.md records their numbers.

// BenchmarkVerifyKratos measures one whoami round trip to Kratos, the cost
// of every request without the cache.
func BenchmarkVerifyKratos(b *testing.B) {
	f := sessionsFixture(b)
	sessions := newSessions()
	ctx := context.Background()

	for b.Loop() {
		if _, err := sessions.Verify(ctx, tokenOf(f.staff[0])); err != nil {
			b.Fatalf("Verify: %v", err)
		}
	}
}

// BenchmarkVerifyCached measures a warm cache hit, the cost of a request
// at steady state.
func BenchmarkVerifyCached(b *testing.B) {
	f := sessionsFixture(b)
	db := newDatabase(b)
	cache := startCache(b, db, newSessions(), sessioncache.Config{})
	ctx := context.Background()
	if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
		b.Fatalf("warm the cache: %v", err)
	}

	b.ReportAllocs()
	for b.Loop() {
		if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
			b.Fatalf("Verify: %v", err)
		}
	}
}

// BenchmarkRevocationPropagation measures how long a revocation made on one
// instance takes to drop the cached session on another instance on the
// same database: from the call to Invalidate on the second instance until
// the first no longer holds the entry. It fails if any revocation takes a
// second or more.
func BenchmarkRevocationPropagation(b *testing.B) {
	f := sessionsFixture(b)
	db := newDatabase(b)
	first := startCache(b, db, newSessions(), sessioncache.Config{})
	second := startCache(b, db, newSessions(), sessioncache.Config{})
	ctx := context.Background()

	var total, slowest time.Duration
	revocations := 0
	for b.Loop() {
		b.StopTimer()
		if _, err := first.Verify(ctx, tokenOf(f.staff[0])); err != nil {
			b.Fatalf("Verify: %v", err)
		}
		if first.Len() != 1 {
			b.Fatalf("entries on the first instance = %d, want 1", first.Len())
		}
		b.StartTimer()

		start := time.Now()
		if err := second.Invalidate(ctx, f.staff[0].identityID); err != nil {
			b.Fatalf("Invalidate: %v", err)
		}
		for first.Len() != 0 {
			if time.Since(start) >= time.Second {
				b.Fatalf("revocation not applied on the first instance after %v", time.Since(start))
			}
			time.Sleep(20 * time.Microsecond)
		}
		elapsed := time.Since(start)
		total += elapsed
		slowest = max(slowest, elapsed)
		revocations++
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(revocations), "ms/revocation")
	b.ReportMetric(float64(slowest.Microseconds())/1000, "max-ms")
}
