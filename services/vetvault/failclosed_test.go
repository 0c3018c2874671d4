package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
)

// The fail-closed tests run a second server on the test database whose Keto
// URLs lead to a closed port or to a listener that never responds. The
// shared Keto keeps running for the other tests.

// withKeto returns the URL of a second server on s's database and session
// cache whose Keto read and write APIs are at ketoURL.
func (s *testServer) withKeto(ketoURL string) string {
	s.t.Helper()
	cfg, err := loadConfig()
	if err != nil {
		s.t.Fatalf("load config: %v", err)
	}
	cfg.KetoReadURL, cfg.KetoWriteURL = ketoURL, ketoURL
	handler, err := newHandler(cfg, s.db.App, s.sessions, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.t.Fatalf("build handler with Keto at %s: %v", ketoURL, err)
	}
	server := httptest.NewServer(handler)
	s.t.Cleanup(server.Close)
	return server.URL
}

// silentKeto listens on a loopback port, accepts connections and never
// responds, like a Keto that hangs. It counts the connections it accepts.
func silentKeto(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	accepted := &atomic.Int64{}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns = append(conns, conn) // held open, never read or written
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		<-done
		for _, conn := range conns {
			conn.Close()
		}
	})
	return "http://" + listener.Addr().String(), accepted
}

// deadKetoURL is a loopback port where nothing listens, so every connection
// is refused at once.
const deadKetoURL = "http://127.0.0.1:1"

// databaseDigest returns, per table of the test database, a row count and
// a hash of every row, read as the migration owner. Tables under row-level
// security are read once per clinic, with that clinic as the tenant,
// because the owner too sees only the current tenant's rows: the clinics
// are those given and those in clinic_registry. Rows of denied-access audit
// events are left out, because a denial may be audited.
func databaseDigest(t *testing.T, s *testServer, clinics []string) map[string]string {
	t.Helper()
	ctx := context.Background()
	registry, err := s.db.Owner.Query(ctx, `SELECT clinic_id::text FROM clinic_registry`)
	if err != nil {
		t.Fatalf("list registered clinics: %v", err)
	}
	registered, err := pgx.CollectRows(registry, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read registered clinics: %v", err)
	}
	for _, id := range registered {
		if !slices.Contains(clinics, id) {
			clinics = append(clinics, id)
		}
	}

	rows, err := s.db.Owner.Query(ctx, `SELECT c.relname, c.relrowsecurity FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	type table struct {
		name string
		rls  bool
	}
	tables, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (table, error) {
		var tb table
		return tb, row.Scan(&tb.name, &tb.rls)
	})
	if err != nil {
		t.Fatalf("read tables: %v", err)
	}

	digest := map[string]string{}
	for _, tb := range tables {
		filter := ""
		if tb.name == "audit_events" || tb.name == "security_events" {
			filter = " WHERE action <> '" + string(identity.ActionAccessDenied) + "'"
		}
		query := fmt.Sprintf(`SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')
			FROM %s AS t%s`, pgx.Identifier{tb.name}.Sanitize(), filter)
		tenants := []string{""}
		if tb.rls {
			tenants = clinics
		}
		hash := sha256.New()
		for _, tenant := range tenants {
			var count int
			var sum string
			err := pgx.BeginFunc(ctx, s.db.Owner, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenant); err != nil {
					return err
				}
				return tx.QueryRow(ctx, query).Scan(&count, &sum)
			})
			if err != nil {
				t.Fatalf("digest table %s: %v", tb.name, err)
			}
			fmt.Fprintf(hash, "%s:%d:%s;", tenant, count, sum)
		}
		digest[tb.name] = hex.EncodeToString(hash.Sum(nil))
	}
	return digest
}

// TestPermissionChecksFailClosed sends every operation that declares a
// permission to a server whose Keto is unreachable or hangs, as callers who
// would be allowed (the owner) and refused (a receptionist, an outsider),
// with valid bodies and real ids. Each must get 503 and change nothing.
func TestPermissionChecksFailClosed(t *testing.T) {
	s := newTestServer(t)
	callers := []string{"owner", "veterinarian", "receptionist", "other_owner"}
	f := newMatrixFixtures(t, s, callers...)

	var protected []declaredOperation
	for _, op := range documentOperations(t, s.do(http.MethodGet, "/openapi.json", "", nil).body) {
		if op.Access.Permission != "" {
			protected = append(protected, op)
		}
	}
	if len(protected) < 5 {
		t.Fatalf("found %d operations that declare a permission, want at least 5", len(protected))
	}

	slowURL, accepted := silentKeto(t)
	tests := []struct {
		name    string
		ketoURL string
	}{
		{"keto unreachable", deadKetoURL},
		{"keto slower than the deadline", slowURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broken := s.withKeto(tt.ketoURL)
			// Plan first: fresh fixtures are made on the working server.
			planned := map[string][]plannedRequest{}
			for _, op := range protected {
				requests, err := f.planAll(op, callers)
				if err != nil {
					t.Fatalf("plan %s: %v", op.ID, err)
				}
				planned[op.ID] = requests
			}
			before := databaseDigest(t, s, []string{f.clinic.ID, f.otherClinic.ID})

			// All operations at once, so the slow case waits for one deadline.
			type result struct {
				op        declaredOperation
				requests  []plannedRequest
				responses []response
				err       error
			}
			results := make(chan result, len(protected))
			for _, op := range protected {
				go func() {
					responses, err := f.sendAll(broken, planned[op.ID])
					results <- result{op, planned[op.ID], responses, err}
				}()
			}
			for range protected {
				r := <-results
				if r.err != nil {
					t.Errorf("call %s: %v", r.op.ID, r.err)
					continue
				}
				for i, resp := range r.responses {
					checkPermissionsUnavailable(t, r.op.ID+" as "+r.requests[i].caller, resp)
				}
			}

			after := databaseDigest(t, s, []string{f.clinic.ID, f.otherClinic.ID})
			for table, digest := range before {
				if after[table] != digest {
					t.Errorf("table %s changed while Keto was down, want no change", table)
				}
			}
			for table := range after {
				if _, ok := before[table]; !ok {
					t.Errorf("table %s appeared while Keto was down", table)
				}
			}
		})
	}
	if accepted.Load() == 0 {
		t.Error("the silent Keto accepted no connection, so the slow case did not reach it")
	}
}

// checkPermissionsUnavailable checks that r is a 503 problem saying the
// permission service is unavailable.
func checkPermissionsUnavailable(t *testing.T, name string, r response) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("%s: status %d, want 503; body %s", name, r.status, r.body)
		return
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s: Content-Type %q, want application/problem+json", name, ct)
	}
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Errorf("%s: decode problem %s: %v", name, r.body, err)
		return
	}
	if !strings.Contains(p.Detail, "permission service unavailable") || !strings.Contains(p.Detail, "denied") {
		t.Errorf("%s: detail %q, want it to say the permission service is unavailable and the request denied", name, p.Detail)
	}
}

// deniedEvent is an access.denied row of the audit trail.
type deniedEvent struct {
	actor                                 uuid.UUID
	ip, userAgent                         string
	operation, permission, object, clinic string
}

const deniedEventColumns = `actor_id, ip, user_agent, detail->>'operation', detail->>'permission', detail->>'object', detail->>'clinic_id'`

func scanDeniedEvents(t *testing.T, rows pgx.Rows, err error) []deniedEvent {
	t.Helper()
	if err != nil {
		t.Fatalf("query denied events: %v", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (deniedEvent, error) {
		var e deniedEvent
		return e, row.Scan(&e.actor, &e.ip, &e.userAgent, &e.operation, &e.permission, &e.object, &e.clinic)
	})
	if err != nil {
		t.Fatalf("read denied events: %v", err)
	}
	return events
}

// clinicDenials returns clinicID's access.denied audit events by actor.
func clinicDenials(t *testing.T, s *testServer, clinicID, actor string) []deniedEvent {
	t.Helper()
	var events []deniedEvent
	err := s.db.App.InClinic(context.Background(), uuid.MustParse(clinicID), func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), `SELECT `+deniedEventColumns+` FROM audit_events
			WHERE action = $1 AND actor_id = $2 ORDER BY occurred_at`, string(identity.ActionAccessDenied), actor)
		events = scanDeniedEvents(t, rows, err)
		return nil
	})
	if err != nil {
		t.Fatalf("read clinic audit events: %v", err)
	}
	return events
}

// platformDenials returns the platform's access.denied security events by
// actor; only the migration owner may read them.
func platformDenials(t *testing.T, s *testServer, actor string) []deniedEvent {
	t.Helper()
	rows, err := s.db.Owner.Query(context.Background(), `SELECT `+deniedEventColumns+` FROM security_events
		WHERE action = $1 AND actor_id = $2 ORDER BY id`, string(identity.ActionAccessDenied), actor)
	return scanDeniedEvents(t, rows, err)
}

// TestDeniedAttemptsAreAudited checks where a denial is recorded: a
// member's in the clinic's own audit trail, which the clinic reviews, and
// an outsider's probe in the platform's security events, so it writes
// nothing into a clinic the outsider cannot see.
func TestDeniedAttemptsAreAudited(t *testing.T) {
	s := newTestServer(t)
	f := newMatrixFixtures(t, s, "owner", "receptionist", "other_owner")
	owner, receptionist, outsider := f.callers["owner"], f.callers["receptionist"], f.callers["other_owner"]
	clinicPath := "/v1/clinics/" + f.clinic.ID

	t.Run("member without the permission", func(t *testing.T) {
		r, err := f.send(s.url, http.MethodGet, clinicPath+"/staff", receptionist.token, nil)
		if err != nil || r.status != http.StatusForbidden {
			t.Fatalf("receptionist lists staff: status %d, error %v; want 403", r.status, err)
		}
		events := clinicDenials(t, s, f.clinic.ID, receptionist.identityID)
		if len(events) != 1 {
			t.Fatalf("%d access.denied events in clinic A by the receptionist, want 1: %+v", len(events), events)
		}
		want := deniedEvent{
			actor: uuid.MustParse(receptionist.identityID), ip: "127.0.0.1", userAgent: "vetvault-matrix-test",
			operation: "list-staff", permission: "view_staff", object: "Clinic:" + f.clinic.ID, clinic: f.clinic.ID,
		}
		if events[0] != want {
			t.Errorf("event = %+v, want %+v", events[0], want)
		}
		if n := len(platformDenials(t, s, receptionist.identityID)); n != 0 {
			t.Errorf("%d platform security events for a member's denial, want 0", n)
		}
	})

	t.Run("outsider probing the clinic", func(t *testing.T) {
		r, err := f.send(s.url, http.MethodGet, clinicPath, outsider.token, nil)
		if err != nil || r.status != http.StatusNotFound {
			t.Fatalf("outsider reads clinic A: status %d, error %v; want 404", r.status, err)
		}
		events := platformDenials(t, s, outsider.identityID)
		if len(events) != 1 {
			t.Fatalf("%d platform access.denied events by the outsider, want 1: %+v", len(events), events)
		}
		want := deniedEvent{
			actor: uuid.MustParse(outsider.identityID), ip: "127.0.0.1", userAgent: "vetvault-matrix-test",
			operation: "get-clinic", permission: "view", object: "Clinic:" + f.clinic.ID, clinic: f.clinic.ID,
		}
		if events[0] != want {
			t.Errorf("event = %+v, want %+v", events[0], want)
		}
		if n := len(clinicDenials(t, s, f.clinic.ID, outsider.identityID)); n != 0 {
			t.Errorf("%d events in clinic A's own trail for an outsider's probe, want 0", n)
		}
	})

	t.Run("probe of a clinic that does not exist", func(t *testing.T) {
		before := len(platformDenials(t, s, outsider.identityID))
		missing := uuid.NewString()
		r, err := f.send(s.url, http.MethodGet, "/v1/clinics/"+missing+"/appointments", outsider.token, nil)
		if err != nil || r.status != http.StatusNotFound {
			t.Fatalf("outsider lists a missing clinic's appointments: status %d, error %v; want 404", r.status, err)
		}
		events := platformDenials(t, s, outsider.identityID)
		if len(events) != before+1 {
			t.Fatalf("%d platform access.denied events by the outsider, want %d", len(events), before+1)
		}
		if got := events[len(events)-1]; got.clinic != missing || got.permission != "view_appointments" {
			t.Errorf("event = %+v, want clinic %s and permission view_appointments", got, missing)
		}
	})

	t.Run("allowed request records no denial", func(t *testing.T) {
		r, err := f.send(s.url, http.MethodGet, clinicPath+"/staff", owner.token, nil)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("owner lists staff: status %d, error %v; want 200", r.status, err)
		}
		if n := len(clinicDenials(t, s, f.clinic.ID, owner.identityID)); n != 0 {
			t.Errorf("%d access.denied events by the owner, want 0", n)
		}
		if n := len(platformDenials(t, s, owner.identityID)); n != 0 {
			t.Errorf("%d platform access.denied events by the owner, want 0", n)
		}
	})
}
