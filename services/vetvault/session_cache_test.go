package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/identity/selfservice"
	"vetvault/identity/sessioncache"
	"vetvault/tenants/tenanttest"
)

// newCachingTestServer starts a server instance on db as serve does, with
// its session cache listening, and returns it with its cache.
func newCachingTestServer(t *testing.T, db *tenanttest.Database) (*testServer, *sessioncache.Cache) {
	t.Helper()
	t.Setenv("VETVAULT_ENV", "dev")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	cfg.DatabaseURL = db.AppURL
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sessions := newSessionCache(cfg, db.App, log)
	handler, err := newHandler(cfg, db.App, sessions, log)
	if err != nil {
		t.Fatalf("build handler: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sessions.Run(ctx) }()
	server := httptest.NewServer(handler)
	t.Cleanup(func() {
		server.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("session cache listener: %v", err)
		}
	})
	waitUntil(t, "session cache listening", sessions.Listening)

	client := &http.Client{Timeout: 15 * time.Second}
	s := &testServer{t: t, url: server.URL, flows: selfservice.New(server.URL+"/.ory", client), client: client, db: db}
	return s, sessions
}

// newListenerDatabase returns a fresh test database whose cleanup, before
// the drop, waits for every session cache listener's backend to end.
// PostgreSQL ends one just after its client closed the connection, and the
// migration owner that drops the database may not end the runtime role's
// backends itself.
func newListenerDatabase(t *testing.T) *tenanttest.Database {
	t.Helper()
	db := tenanttest.New(t)
	t.Cleanup(func() {
		waitUntil(t, "listener backends ended", func() bool {
			var backends int
			err := db.Owner.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
				db.Name, sessioncache.ApplicationName).Scan(&backends)
			return err == nil && backends == 0
		})
	})
	return db
}

// waitUntil polls cond until it holds, and fails the test after 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSessionCacheEndToEnd(t *testing.T) {
	db := newListenerDatabase(t)
	first, firstSessions := newCachingTestServer(t, db)
	second, _ := newCachingTestServer(t, db)
	ctx := context.Background()

	identityOf := func(t *testing.T, s *testServer, token string) uuid.UUID {
		t.Helper()
		var me struct {
			IdentityID string `json:"identity_id"`
		}
		r := s.do(http.MethodGet, "/v1/me", token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET /v1/me: status %d, body %s", r.status, r.body)
		}
		r.json(t, &me)
		return uuid.MustParse(me.IdentityID)
	}

	t.Run("session revoked in Kratos directly is served until invalidated", func(t *testing.T) {
		person := first.signUp(true)
		identityID := identityOf(t, first, person.token)

		cfg, err := loadConfig()
		if err != nil {
			t.Fatalf("load config: %v", err)
		}
		admin := identity.NewAdmin(cfg.KratosAdminURL, http.DefaultClient)
		if err := admin.RevokeSessions(ctx, identityID); err != nil {
			t.Fatalf("revoke sessions in Kratos: %v", err)
		}
		// Nothing notifies the cache of a revocation outside the platform,
		// so the revoked session keeps working until the TTL ends.
		if r := first.do(http.MethodGet, "/v1/me", person.token, nil); r.status != http.StatusOK {
			t.Errorf("request after a revocation in Kratos: status %d, want 200 from the cache", r.status)
		}

		if err := firstSessions.Invalidate(ctx, identityID); err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
		if r := first.do(http.MethodGet, "/v1/me", person.token, nil); r.status != http.StatusUnauthorized {
			t.Errorf("request after Invalidate: status %d, want 401", r.status)
		}
	})

	t.Run("session revoked through one instance ends on the other", func(t *testing.T) {
		person := first.signUp(true)
		other, err := first.flows.LogIn(ctx, person.email, person.password)
		if err != nil {
			t.Fatalf("second login: %v", err)
		}
		// The next TOTP step, because the code of the current one was
		// spent on enrolment.
		other, err = first.flows.CompleteSecondFactor(ctx, other, person.secret, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatalf("second factor: %v", err)
		}
		otherID := identityOf(t, first, other) // cached on the first instance

		var list struct {
			Sessions []struct {
				ID      string `json:"id"`
				Current bool   `json:"current"`
			} `json:"sessions"`
		}
		second.do(http.MethodGet, "/v1/me/sessions", person.token, nil).json(t, &list)
		target := ""
		for _, session := range list.Sessions {
			if !session.Current {
				target = session.ID
			}
		}
		if target == "" {
			t.Fatalf("session list %+v has no other session", list.Sessions)
		}
		if r := second.do(http.MethodDelete, "/v1/me/sessions/"+target, person.token, nil); r.status != http.StatusNoContent {
			t.Fatalf("revoke the other session on the second instance: status %d, body %s", r.status, r.body)
		}

		// Correctness only: BenchmarkRevocationPropagation in
		// identity/sessioncache measures how fast this happens.
		waitUntil(t, "revoked session rejected on the first instance", func() bool {
			return first.do(http.MethodGet, "/v1/me", other, nil).status == http.StatusUnauthorized
		})
		if got := identityOf(t, first, person.token); got != otherID {
			t.Errorf("remaining session's identity = %s, want %s", got, otherID)
		}
	})
}
