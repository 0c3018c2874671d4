package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/api"
	"vetvault/services/appointment"
	"vetvault/services/audit"
	"vetvault/tenants"
	"vetvault/tenants/tenanttest"
)

// The permission benchmarks send in-process requests through the whole API
// handler (request id, Huma, the access middleware, the handler and its
// PostgreSQL query) on the real database and Keto. docs/benchmarks.md
// records their numbers.
//
// Session verification is a stub in every arm, labelled stubSessions below:
// it returns a fixed AAL2 session for a token without calling Kratos, so the
// arms differ only in the permission check. The session cache has its own
// benchmarks in identity/sessioncache.

// stubSessions returns a fixed session per session token, without Kratos.
type stubSessions map[string]identity.Session

func (s stubSessions) Verify(_ context.Context, creds identity.Credentials) (identity.Session, error) {
	session, ok := s[creds.Token]
	if !ok {
		return identity.Session{}, identity.ErrSessionInvalid
	}
	return session, nil
}

// allowAllStub is the no-check arm: it allows every permission without
// asking Keto, so a request through it costs everything but the check.
// It exists only in this benchmark.
type allowAllStub struct {
	api.PermissionChecker
}

func (allowAllStub) Check(context.Context, string, string, string, uuid.UUID) (bool, error) {
	return true, nil
}

// permissionBench is one clinic with an owner and a receptionist, served by
// an API that checks permissions in Keto and by one that allows everything.
type permissionBench struct {
	keto, allowAll http.Handler
	clinicID       uuid.UUID
	permissions    *identity.Permissions
	owner          uuid.UUID
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func newPermissionBench(b *testing.B) *permissionBench {
	b.Helper()
	ctx := context.Background()
	db := tenanttest.New(b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	permissions := identity.NewPermissions(
		envOr("VETVAULT_KETO_READ_URL", "http://127.0.0.1:4466"),
		envOr("VETVAULT_KETO_WRITE_URL", "http://127.0.0.1:4467"),
		&http.Client{Timeout: 10 * time.Second})
	clinics := tenants.NewClinics(db.App, tenants.NewOutbox(db.App, permissions, log))

	owner, receptionist := uuid.New(), uuid.New()
	clinic, err := clinics.Create(ctx, owner, tenants.NewClinic{Name: "Benchmark Clinic", BranchName: "Indiranagar", OwnerEmail: "bench-owner@vetvault.test"})
	if err != nil {
		b.Fatalf("create clinic: %v", err)
	}
	b.Cleanup(func() { deleteRelationships(b, permissions, clinic) })
	err = permissions.Write(ctx, identity.Relationship{
		Namespace: identity.ClinicNamespace, Object: clinic.ID.String(), Relation: "receptionists", SubjectID: receptionist,
	})
	if err != nil {
		b.Fatalf("grant receptionist: %v", err)
	}

	appointments := appointment.NewStore(db.App)
	_, err = appointments.Book(ctx, clinic.ID, owner, appointment.Booking{
		BranchID: clinic.Branches[0].ID, PetName: "Coco", Species: "Dog", PetParentName: "Bench Parent",
		PetParentPhone: "+919812345678", StartsAt: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC),
		Duration: 20 * time.Minute, Reason: "Annual vaccination",
	})
	if err != nil {
		b.Fatalf("book appointment: %v", err)
	}

	sessions := stubSessions{
		"owner":        {ID: uuid.NewString(), IdentityID: owner, SchemaID: identity.SchemaStaff, AAL: identity.AAL2, AuthenticatedAt: time.Now()},
		"receptionist": {ID: uuid.NewString(), IdentityID: receptionist, SchemaID: identity.SchemaStaff, AAL: identity.AAL2, AuthenticatedAt: time.Now()},
	}
	build := func(checker api.PermissionChecker) http.Handler {
		mux := http.NewServeMux()
		api.New(mux, api.Deps{
			Sessions: sessions, Permissions: checker, Clinics: clinics, Appointments: appointments,
			Audit: audit.NewStore(db.App, time.Now), Log: log, PrivilegedWindow: 15 * time.Minute, Now: time.Now,
		})
		return api.WithRequestID(log, mux)
	}
	return &permissionBench{
		keto: build(permissions), allowAll: build(allowAllStub{permissions}),
		clinicID: clinic.ID, permissions: permissions, owner: owner,
	}
}

// deleteRelationships removes from the shared Keto every relationship on
// the clinic and its branches.
func deleteRelationships(b *testing.B, permissions *identity.Permissions, clinic tenants.Clinic) {
	ctx := context.Background()
	objects := [][2]string{{identity.ClinicNamespace, clinic.ID.String()}}
	for _, branch := range clinic.Branches {
		objects = append(objects, [2]string{identity.BranchNamespace, branch.ID.String()})
	}
	for _, object := range objects {
		found, err := permissions.Relationships(ctx, object[0], object[1])
		if err != nil {
			b.Errorf("list relationships of %s:%s: %v", object[0], object[1], err)
			continue
		}
		for _, r := range found {
			if err := permissions.Delete(ctx, r); err != nil {
				b.Errorf("delete %s: %v", r, err)
			}
		}
	}
}

// serve sends one request in-process and fails b unless the status is want.
func serve(b *testing.B, handler http.Handler, path, token string, want int) {
	request := httptest.NewRequest(http.MethodGet, path, nil)
	request.Header.Set("Authorization", "Bearer "+token)
	recorder := httptest.NewRecorder()
	handler.ServeHTTP(recorder, request)
	if recorder.Code != want {
		b.Fatalf("GET %s as %s: status %d, want %d; body %s", path, token, recorder.Code, want, recorder.Body)
	}
}

// BenchmarkPermissionOverhead measures one GET of a clinic's appointment
// list, which holds one appointment, through the whole API. The keto arm
// checks the permission in Keto and the no-check arm uses the allow-all
// stub. The interleaved arm alternates the two in one loop and reports each
// one's mean and their difference, measured under the same machine load.
// The denied arm is a receptionist's GET of the staff list: two Keto checks
// and an audit event insert before the 403 response.
func BenchmarkPermissionOverhead(b *testing.B) {
	bench := newPermissionBench(b)
	list := "/v1/clinics/" + bench.clinicID.String() + "/appointments"

	b.Run("keto", func(b *testing.B) {
		for b.Loop() {
			serve(b, bench.keto, list, "owner", http.StatusOK)
		}
	})
	b.Run("no-check", func(b *testing.B) {
		for b.Loop() {
			serve(b, bench.allowAll, list, "owner", http.StatusOK)
		}
	})
	b.Run("interleaved", func(b *testing.B) {
		var withCheck, withoutCheck time.Duration
		n := 0
		for b.Loop() {
			start := time.Now()
			serve(b, bench.keto, list, "owner", http.StatusOK)
			middle := time.Now()
			serve(b, bench.allowAll, list, "owner", http.StatusOK)
			withoutCheck += time.Since(middle)
			withCheck += middle.Sub(start)
			n++
		}
		b.ReportMetric(float64(withCheck.Nanoseconds())/float64(n), "keto-ns/req")
		b.ReportMetric(float64(withoutCheck.Nanoseconds())/float64(n), "no-check-ns/req")
		b.ReportMetric(float64((withCheck-withoutCheck).Nanoseconds())/float64(n), "overhead-ns/req")
	})
	b.Run("denied", func(b *testing.B) {
		staff := "/v1/clinics/" + bench.clinicID.String() + "/staff"
		for b.Loop() {
			serve(b, bench.keto, staff, "receptionist", http.StatusForbidden)
		}
	})
}

// BenchmarkKetoCheck measures one allowed permission check against Keto
// alone, without HTTP handling on the VetVault side.
func BenchmarkKetoCheck(b *testing.B) {
	bench := newPermissionBench(b)
	ctx := context.Background()
	for b.Loop() {
		allowed, err := bench.permissions.Check(ctx, identity.ClinicNamespace, bench.clinicID.String(), "view_appointments", bench.owner)
		if err != nil || !allowed {
			b.Fatalf("Check = %t, %v; want allowed", allowed, err)
		}
	}
}
