package sessioncache_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"vetvault/identity"
	"vetvault/identity/sessioncache"
)

func TestVerifyCaching(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)

	tests := []struct {
		name      string
		creds     identity.Credentials
		wantErr   error
		wantAAL   string
		wantCalls int64
	}{
		{"AAL2 session is served from the cache", tokenOf(f.staff[0]), nil, identity.AAL2, 1},
		{"invalid token goes to Kratos each time", identity.Credentials{Token: "not-a-session-token"}, identity.ErrSessionInvalid, "", 2},
		{"second factor pending goes to Kratos each time", identity.Credentials{Token: f.pendingToken}, identity.ErrSecondFactorPending, "", 2},
		{"AAL1 session goes to Kratos each time", tokenOf(f.unenrolled), nil, "aal1", 2},
		{"missing credentials go to the verifier", identity.Credentials{}, identity.ErrNoSession, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifier := &countingVerifier{next: newSessions()}
			cache := startCache(t, db, verifier, sessioncache.Config{})
			for range 2 {
				session, err := cache.Verify(context.Background(), tt.creds)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
				}
				if session.AAL != tt.wantAAL {
					t.Errorf("AAL = %q, want %q", session.AAL, tt.wantAAL)
				}
			}
			if got := verifier.calls.Load(); got != tt.wantCalls {
				t.Errorf("verifier calls = %d, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestVerifyReturnsCachedSession(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	cache := startCache(t, db, newSessions(), sessioncache.Config{})

	first, err := cache.Verify(context.Background(), tokenOf(f.staff[0]))
	if err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	second, err := cache.Verify(context.Background(), tokenOf(f.staff[0]))
	if err != nil {
		t.Fatalf("second Verify: %v", err)
	}
	if second != first {
		t.Errorf("cached session = %+v, want %+v", second, first)
	}
	if first.IdentityID != f.staff[0].identityID {
		t.Errorf("identity = %s, want %s", first.IdentityID, f.staff[0].identityID)
	}
}

func TestVerifyExpiry(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	session, err := newSessions().Verify(context.Background(), tokenOf(f.staff[0]))
	if err != nil {
		t.Fatalf("verify fixture session: %v", err)
	}
	untilExpiry := time.Until(session.ExpiresAt)

	tests := []struct {
		name      string
		ttl       time.Duration
		advance   time.Duration
		wantCalls int64
	}{
		{"entry is served until the TTL ends", 15 * time.Second, 15*time.Second - time.Nanosecond, 1},
		{"entry expires with the TTL", 15 * time.Second, 15 * time.Second, 2},
		{"entry is served until the session expires", 1000 * time.Hour, untilExpiry - time.Minute, 1},
		{"entry expires with the session", 1000 * time.Hour, untilExpiry + time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := &clock{now: time.Now()}
			verifier := &countingVerifier{next: newSessions()}
			cache := startCache(t, db, verifier, sessioncache.Config{TTL: tt.ttl, Now: now.Now})

			if _, err := cache.Verify(context.Background(), tokenOf(f.staff[0])); err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			now.Advance(tt.advance)
			// Kratos compares with its own clock, so the session is still
			// valid there. Only the cache's clock moved.
			if _, err := cache.Verify(context.Background(), tokenOf(f.staff[0])); err != nil {
				t.Fatalf("second Verify: %v", err)
			}
			if got := verifier.calls.Load(); got != tt.wantCalls {
				t.Errorf("verifier calls = %d, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestVerifyEvictsLeastRecentlyUsed(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	verifier := &countingVerifier{next: newSessions()}
	cache := startCache(t, db, verifier, sessioncache.Config{MaxEntries: 2})

	// staff[1] is the least recently used when staff[2] arrives.
	for _, p := range []person{f.staff[0], f.staff[1], f.staff[0], f.staff[2]} {
		if _, err := cache.Verify(context.Background(), tokenOf(p)); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if got := cache.Len(); got != 2 {
		t.Errorf("entries = %d, want 2", got)
	}
	before := verifier.calls.Load()
	for _, p := range []person{f.staff[0], f.staff[2]} {
		if _, err := cache.Verify(context.Background(), tokenOf(p)); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if got := verifier.calls.Load() - before; got != 0 {
		t.Errorf("verifier calls for the two recent sessions = %d, want 0", got)
	}
	if _, err := cache.Verify(context.Background(), tokenOf(f.staff[1])); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := verifier.calls.Load() - before; got != 1 {
		t.Errorf("verifier calls after the evicted session = %d, want 1", got)
	}
}

func TestVerifyConcurrentMissesShareOneCall(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	verifier := &countingVerifier{next: newSessions(), hold: make(chan struct{})}
	cache := startCache(t, db, verifier, sessioncache.Config{})

	const requests = 8
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for range requests {
		wg.Go(func() {
			_, err := cache.Verify(context.Background(), tokenOf(f.staff[0]))
			errs <- err
		})
	}
	waitFor(t, "first verification in flight", func() bool { return verifier.calls.Load() >= 1 })
	// Give the other requests time to join the call in flight. Without
	// sharing, each of them calls the verifier and the count below fails.
	time.Sleep(100 * time.Millisecond)
	close(verifier.hold)
	wg.Wait()
	close(errs)

	for err := range errs {
		if err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if got := verifier.calls.Load(); got != 1 {
		t.Errorf("verifier calls = %d, want 1", got)
	}
}

func TestInvalidate(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	verifier := &countingVerifier{next: newSessions()}
	cache := startCache(t, db, verifier, sessioncache.Config{})
	ctx := context.Background()

	for _, p := range f.staff[:2] {
		if _, err := cache.Verify(ctx, tokenOf(p)); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if err := cache.Invalidate(ctx, f.staff[0].identityID); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	// Checked at once: the local drop does not wait for the notification.
	if got := cache.Len(); got != 1 {
		t.Errorf("entries after Invalidate = %d, want 1", got)
	}

	before := verifier.calls.Load()
	if _, err := cache.Verify(ctx, tokenOf(f.staff[1])); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := verifier.calls.Load() - before; got != 0 {
		t.Errorf("verifier calls for the other identity = %d, want 0", got)
	}
	if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := verifier.calls.Load() - before; got != 1 {
		t.Errorf("verifier calls for the invalidated identity = %d, want 1", got)
	}

	if err := cache.InvalidateAll(ctx); err != nil {
		t.Fatalf("InvalidateAll: %v", err)
	}
	if got := cache.Len(); got != 0 {
		t.Errorf("entries after InvalidateAll = %d, want 0", got)
	}
}

func TestInvalidateReachesOtherInstance(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	ctx := context.Background()

	tests := []struct {
		name        string
		invalidate  func(*sessioncache.Cache) error
		wantEntries int
	}{
		{"identity notification drops that identity", func(c *sessioncache.Cache) error { return c.Invalidate(ctx, f.staff[0].identityID) }, 1},
		{"notification for everything drops all", func(c *sessioncache.Cache) error { return c.InvalidateAll(ctx) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifier := &countingVerifier{next: newSessions()}
			first := startCache(t, db, verifier, sessioncache.Config{})
			second := startCache(t, db, newSessions(), sessioncache.Config{})
			for _, p := range f.staff[:2] {
				if _, err := first.Verify(ctx, tokenOf(p)); err != nil {
					t.Fatalf("Verify: %v", err)
				}
			}

			if err := tt.invalidate(second); err != nil {
				t.Fatalf("invalidate on the second instance: %v", err)
			}
			waitFor(t, "notification applied on the first instance", func() bool { return first.Len() == tt.wantEntries })

			before := verifier.calls.Load()
			if _, err := first.Verify(ctx, tokenOf(f.staff[0])); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got := verifier.calls.Load() - before; got != 1 {
				t.Errorf("verifier calls after the notification = %d, want 1", got)
			}
		})
	}
}

func TestVerifyRacingInvalidateIsNotCached(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	verifier := &countingVerifier{next: newSessions(), hold: make(chan struct{})}
	cache := startCache(t, db, verifier, sessioncache.Config{})
	ctx := context.Background()

	verified := make(chan error, 1)
	go func() {
		_, err := cache.Verify(ctx, tokenOf(f.staff[0]))
		verified <- err
	}()
	waitFor(t, "verification in flight", func() bool { return verifier.calls.Load() == 1 })
	// Kratos has returned the session as valid, and the revocation lands
	// before the result is stored.
	if err := cache.Invalidate(ctx, f.staff[0].identityID); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	close(verifier.hold)
	if err := <-verified; err != nil {
		t.Fatalf("Verify: %v", err)
	}

	if got := cache.Len(); got != 0 {
		t.Errorf("entries = %d, want 0", got)
	}
}

func TestListenerLossDisablesCache(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	verifier := &countingVerifier{next: newSessions()}
	cache := startCache(t, db, verifier, sessioncache.Config{})
	ctx := context.Background()

	if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Only the runtime role may end the listener's backend, which runs as
	// that role, so its connection is opened before new ones are refused.
	_, app := db.OpenApp(t, func(*pgxpool.Config) {})
	if err := app.Ping(ctx); err != nil {
		t.Fatalf("connect as the runtime role: %v", err)
	}
	// Refuse new connections to the test database, so the listener stays
	// disconnected until the limit is lifted, then end its connection.
	if _, err := db.Owner.Exec(ctx, "ALTER DATABASE "+db.Name+" CONNECTION LIMIT 0"); err != nil {
		t.Fatalf("block new connections: %v", err)
	}
	var pid int
	err := app.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`,
		sessioncache.ApplicationName).Scan(&pid)
	if err != nil {
		t.Fatalf("find the listener connection: %v", err)
	}
	var terminated bool
	if err := app.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("terminate listener connection %d: terminated=%v, err=%v", pid, terminated, err)
	}

	waitFor(t, "listener disconnected", func() bool { return !cache.Listening() })
	if got := cache.Len(); got != 0 {
		t.Errorf("entries after the loss = %d, want 0", got)
	}
	before := verifier.calls.Load()
	for range 2 {
		if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
			t.Fatalf("Verify while disconnected: %v", err)
		}
	}
	if got := verifier.calls.Load() - before; got != 2 {
		t.Errorf("verifier calls while disconnected = %d, want 2", got)
	}

	if _, err := db.Owner.Exec(ctx, "ALTER DATABASE "+db.Name+" CONNECTION LIMIT -1"); err != nil {
		t.Fatalf("allow connections again: %v", err)
	}
	waitFor(t, "listener reconnected", cache.Listening)
	before = verifier.calls.Load()
	for range 2 {
		if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
			t.Fatalf("Verify after reconnecting: %v", err)
		}
	}
	if got := verifier.calls.Load() - before; got != 1 {
		t.Errorf("verifier calls after reconnecting = %d, want 1", got)
	}
}

func TestVerifyWithoutListenerPassesThrough(t *testing.T) {
	f := sessionsFixture(t)
	verifier := &countingVerifier{next: newSessions()}
	// Run is never called, as in a server whose listener has not connected yet.
	cache := sessioncache.New(verifier, sessioncache.Config{TTL: time.Minute})

	for range 2 {
		if _, err := cache.Verify(context.Background(), tokenOf(f.staff[0])); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if got := verifier.calls.Load(); got != 2 {
		t.Errorf("verifier calls = %d, want 2", got)
	}
}

func TestVerifyUncachedRefreshesEntry(t *testing.T) {
	f := sessionsFixture(t)
	db := newDatabase(t)
	verifier := &countingVerifier{next: newSessions()}
	cache := startCache(t, db, verifier, sessioncache.Config{})
	ctx := context.Background()

	if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := cache.VerifyUncached(ctx, tokenOf(f.staff[0])); err != nil {
		t.Fatalf("VerifyUncached: %v", err)
	}
	if got := verifier.calls.Load(); got != 2 {
		t.Errorf("verifier calls after VerifyUncached = %d, want 2", got)
	}
	if _, err := cache.Verify(ctx, tokenOf(f.staff[0])); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got := verifier.calls.Load(); got != 2 {
		t.Errorf("verifier calls after the next Verify = %d, want 2", got)
	}
	if got := cache.Len(); got != 1 {
		t.Errorf("entries = %d, want 1", got)
	}
}
