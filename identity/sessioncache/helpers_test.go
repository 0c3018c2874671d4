package sessioncache_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/identity/selfservice"
	"vetvault/identity/sessioncache"
	"vetvault/tenants/tenanttest"
)

// The tests and benchmarks use the real Kratos and PostgreSQL that
// `go tool task services` starts.

func kratosPublicURL() string {
	if url := os.Getenv("VETVAULT_KRATOS_PUBLIC_URL"); url != "" {
		return url
	}
	return "http://127.0.0.1:4433"
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func newSessions() *identity.Sessions {
	return identity.NewSessions(kratosPublicURL(), httpClient)
}

// person is a staff identity registered in Kratos with one session.
type person struct {
	email, password string
	identityID      uuid.UUID
	token           string // AAL2 when enrolled, else AAL1
}

// signUp registers an identity through Kratos's API flows. With enrol set
// it also enrols TOTP, which raises the session to AAL2.
func signUp(ctx context.Context, enrol bool) (person, error) {
	flows := selfservice.New(kratosPublicURL(), httpClient)
	p := person{
		email:    "staff-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test",
		password: rand.Text(),
	}
	var err error
	if p.token, err = flows.Register(ctx, p.email, p.password); err != nil {
		return p, fmt.Errorf("register: %w", err)
	}
	if enrol {
		if _, err := flows.EnrolTOTP(ctx, p.token); err != nil {
			return p, fmt.Errorf("enrol TOTP: %w", err)
		}
	}
	session, err := newSessions().Verify(ctx, identity.Credentials{Token: p.token})
	if err != nil {
		return p, fmt.Errorf("verify new session: %w", err)
	}
	p.identityID = session.IdentityID
	return p, nil
}

// fixture is the set of Kratos sessions the tests share. Registering costs
// about a second each, and no test revokes them in Kratos.
type fixture struct {
	staff [3]person
	// unenrolled has no second factor, so its session is AAL1 and whoami
	// accepts it.
	unenrolled person
	// pendingToken is a password-only session of an enrolled identity,
	// which whoami rejects as second factor pending.
	pendingToken string
}

var loadFixture = sync.OnceValues(func() (fixture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var f fixture
	var err error
	for i := range f.staff {
		if f.staff[i], err = signUp(ctx, true); err != nil {
			return f, err
		}
	}
	if f.unenrolled, err = signUp(ctx, false); err != nil {
		return f, err
	}
	flows := selfservice.New(kratosPublicURL(), httpClient)
	if f.pendingToken, err = flows.LogIn(ctx, f.staff[0].email, f.staff[0].password); err != nil {
		return f, fmt.Errorf("log in with password only: %w", err)
	}
	return f, nil
})

func sessionsFixture(t testing.TB) fixture {
	t.Helper()
	f, err := loadFixture()
	if err != nil {
		t.Fatalf("create Kratos sessions (start the stack with `go tool task services`): %v", err)
	}
	return f
}

func tokenOf(p person) identity.Credentials {
	return identity.Credentials{Token: p.token}
}

// countingVerifier counts calls to the real verifier. With hold set, each
// call waits on it after the verifier returned, so a test can act while a
// verification is in flight.
type countingVerifier struct {
	next  sessioncache.Verifier
	calls atomic.Int64
	hold  chan struct{}
}

func (v *countingVerifier) Verify(ctx context.Context, creds identity.Credentials) (identity.Session, error) {
	v.calls.Add(1)
	session, err := v.next.Verify(ctx, creds)
	if v.hold != nil {
		<-v.hold
	}
	return session, err
}

// clock is a settable clock for TTL tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newDatabase returns a fresh test database. Before it is dropped, its
// cleanup waits for every listener backend to end. PostgreSQL ends a
// backend shortly after its client closed the connection, and a drop in
// between fails, because the migration owner may not terminate the runtime
// role's backends.
func newDatabase(t testing.TB) *tenanttest.Database {
	t.Helper()
	db := tenanttest.New(t)
	t.Cleanup(func() {
		waitFor(t, "listener backends ended", func() bool {
			var backends int
			err := db.Owner.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
				db.Name, sessioncache.ApplicationName).Scan(&backends)
			return err == nil && backends == 0
		})
	})
	return db
}

// startCache returns a cache on db whose listener runs until the test ends,
// once the listener is connected.
func startCache(t testing.TB, db *tenanttest.Database, verifier sessioncache.Verifier, cfg sessioncache.Config) *sessioncache.Cache {
	t.Helper()
	cfg.DatabaseURL = db.AppURL
	cfg.DB = db.App
	if cfg.TTL == 0 {
		cfg.TTL = sessioncache.DefaultTTL
	}
	cache := sessioncache.New(verifier, cfg)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cache.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("listener: %v", err)
		}
	})
	waitFor(t, "listener connected", cache.Listening)
	return cache
}

// waitFor polls cond until it holds, and fails the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
