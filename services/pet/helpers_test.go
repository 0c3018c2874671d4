package pet_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/services/pet"
	"vetvault/tenants"
	"vetvault/tenants/tenanttest"
)

// The tests run against the real PostgreSQL, Keto and Kratos admin API that
// `go tool task test` starts. The URLs default to the development stack's.

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// fixture is one test database with the services on it.
type fixture struct {
	db          *tenanttest.Database
	permissions *identity.Permissions
	admin       *identity.Admin
	clock       *clock
	registry    *pet.Registry
	records     *pet.Records
	referrals   *pet.Referrals
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := tenanttest.New(t)
	client := &http.Client{Timeout: 10 * time.Second}
	permissions := identity.NewPermissions(envOr("VETVAULT_KETO_READ_URL", "http://127.0.0.1:4466"),
		envOr("VETVAULT_KETO_WRITE_URL", "http://127.0.0.1:4467"), client)
	admin := identity.NewAdmin(envOr("VETVAULT_KRATOS_ADMIN_URL", "http://127.0.0.1:4434"), client)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	outbox := tenants.NewOutbox(db.App, permissions, log)
	c := &clock{now: time.Now().Truncate(time.Microsecond)}
	return &fixture{
		db: db, permissions: permissions, admin: admin, clock: c,
		registry:  pet.NewRegistry(db.App, outbox, c.Now),
		records:   pet.NewRecords(db.App, permissions, c.Now),
		referrals: pet.NewReferrals(db.App, outbox, permissions, admin, c.Now, log),
	}
}

// newClinic inserts a clinic row and gives owner the owner relation in Keto.
func (f *fixture) newClinic(t *testing.T, owner uuid.UUID) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	clinicID := uuid.New()
	err := f.db.App.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, 'Test Clinic', $2)`, clinicID, owner)
		return err
	})
	if err != nil {
		t.Fatalf("insert clinic: %v", err)
	}
	f.grant(t, clinicID, "owners", owner)
	return clinicID
}

// grant writes Clinic:<clinicID>#<relation>@<member> and deletes it when the
// test ends.
func (f *fixture) grant(t *testing.T, clinicID uuid.UUID, relation string, member uuid.UUID) {
	t.Helper()
	r := identity.Relationship{Namespace: identity.ClinicNamespace, Object: clinicID.String(), Relation: relation, SubjectID: member}
	if err := f.permissions.Write(context.Background(), r); err != nil {
		t.Fatalf("write %s: %v", r, err)
	}
	t.Cleanup(func() { _ = f.permissions.Delete(context.Background(), r) })
}

// newPet registers a pet parent and a pet in clinicID.
func (f *fixture) newPet(t *testing.T, clinicID uuid.UUID, actor pet.Actor) pet.Pet {
	t.Helper()
	ctx := context.Background()
	parent, err := f.registry.CreateParent(ctx, clinicID, actor, pet.NewParent{Name: "Test Parent", Phone: "+919812345678"})
	if err != nil {
		t.Fatalf("CreateParent: %v", err)
	}
	created, err := f.registry.Create(ctx, clinicID, actor, pet.NewPet{ParentID: parent.ID, Name: "Mithu", Species: "Dog", Sex: pet.SexFemale})
	if err != nil {
		t.Fatalf("Create pet: %v", err)
	}
	return created
}

// newStaff creates an active staff identity in Kratos.
func (f *fixture) newStaff(t *testing.T) identity.Identity {
	t.Helper()
	email := "referral-vet-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test"
	created, err := f.admin.Create(context.Background(), identity.SchemaStaff, email)
	if err != nil {
		t.Fatalf("create staff identity: %v", err)
	}
	t.Cleanup(func() { _ = f.admin.Delete(context.Background(), created.ID) })
	return created
}

// allowed reports whether subject holds permission on the pet in Keto.
func (f *fixture) allowed(t *testing.T, petID uuid.UUID, permission string, subject uuid.UUID) bool {
	t.Helper()
	ok, err := f.permissions.Check(context.Background(), identity.PetNamespace, petID.String(), permission, subject)
	if err != nil {
		t.Fatalf("check %s on pet %s: %v", permission, petID, err)
	}
	return ok
}

// clinicEvents counts clinicID's audit events with action.
func (f *fixture) clinicEvents(t *testing.T, clinicID uuid.UUID, action identity.Action) int {
	t.Helper()
	var n int
	err := f.db.App.InClinic(context.Background(), clinicID, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = $1`, string(action)).Scan(&n)
	})
	if err != nil {
		t.Fatalf("count %s events: %v", action, err)
	}
	return n
}
