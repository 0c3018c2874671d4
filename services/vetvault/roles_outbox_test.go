package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/services/role"
	"vetvault/tenants"
	"vetvault/tenants/tenanttest"
)

func TestReconcilerRepairsDrift(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	ctx := context.Background()
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Drift Clinic")
	base := "/v1/clinics/" + clinic.ID
	nurse, nurseID := s.roleInviteAt(owner.token, clinic.ID, newEmail("nurse"), "nurse", "")
	reconciler := s.roleReconciler(keto)

	if result, err := reconciler.ReconcileOnce(ctx); err != nil || result.Written+result.Deleted != 0 {
		t.Fatalf("first pass = %+v, %v; want nothing to repair", result, err)
	}
	want := s.roleTuples(keto, clinic.ID)

	deleted := identity.Relationship{Namespace: identity.ClinicNamespace, Object: clinic.ID, Relation: "nurses", SubjectID: uuid.MustParse(nurseID)}
	added := identity.Relationship{Namespace: identity.ClinicNamespace, Object: clinic.ID, Relation: "managers", SubjectID: uuid.MustParse(nurseID)}
	link := tenants.BranchLinks(uuid.MustParse(clinic.ID), uuid.MustParse(clinic.Branches[0].ID))[0]
	if err := keto.Delete(ctx, deleted); err != nil {
		t.Fatalf("delete behind the reconciler's back: %v", err)
	}
	if err := keto.Delete(ctx, link); err != nil {
		t.Fatalf("delete branch link: %v", err)
	}
	roleExpect(t, "nurse without the relationship", s.browse(nurse, http.MethodGet, base+"/appointments"), http.StatusNotFound)
	if err := keto.Write(ctx, added); err != nil {
		t.Fatalf("write behind the reconciler's back: %v", err)
	}
	roleExpect(t, "nurse with a stray manager relationship", s.browse(nurse, http.MethodGet, base+"/staff"), http.StatusOK)

	result, err := reconciler.ReconcileOnce(ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if result.Written != 2 || result.Deleted != 1 {
		t.Errorf("repairs = %+v, want 2 written (nurse, branch link) and 1 deleted (manager)", result)
	}
	if got := s.roleTuples(keto, clinic.ID); !slices.Equal(got, want) {
		t.Errorf("relationships after repair =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	roleExpect(t, "nurse after repair", s.browse(nurse, http.MethodGet, base+"/appointments"), http.StatusOK)
	roleExpect(t, "nurse lists staff after repair", s.browse(nurse, http.MethodGet, base+"/staff"), http.StatusForbidden)

	var repairs []string
	err = s.db.App.InClinic(ctx, uuid.MustParse(clinic.ID), func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT detail->>'change' || ' ' || (detail->>'relationship') FROM audit_events
			WHERE action = 'relationship.repaired' ORDER BY 1`)
		if err != nil {
			return err
		}
		repairs, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatalf("read repair events: %v", err)
	}
	wantRepairs := []string{"deleted " + added.String(), "written " + link.String(), "written " + deleted.String()}
	slices.Sort(wantRepairs)
	if !slices.Equal(repairs, wantRepairs) {
		t.Errorf("repair audit events = %v, want %v", repairs, wantRepairs)
	}

	if result, err := reconciler.ReconcileOnce(ctx); err != nil || result.Written+result.Deleted != 0 {
		t.Errorf("pass after repair = %+v, %v; want nothing to repair", result, err)
	}
}

// TestOutboxRetriesFailedApply changes roles through services whose Keto is
// a closed loopback port, then lets the reconciler, with the real Keto,
// apply what stayed pending.
func TestOutboxRetriesFailedApply(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	ctx := context.Background()
	owner := s.signUp(true)
	ownerID := uuid.MustParse(s.identityID(owner.token))
	clinic := s.createClinic(owner.token, "Outbox Clinic")
	clinicID := uuid.MustParse(clinic.ID)
	nurse, nurseID := s.roleInviteAt(owner.token, clinic.ID, newEmail("nurse"), "nurse", "")
	base := "/v1/clinics/" + clinic.ID

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dead := identity.NewPermissions(deadKetoURL, deadKetoURL, &http.Client{Timeout: 2 * time.Second})
	deadOutbox := tenants.NewOutbox(s.db.App, dead, log)
	roles := role.NewService(s.db.App, deadOutbox, time.Now)
	actor := role.Actor{IdentityID: ownerID}

	outboxRows := func() (pending, applied int) {
		t.Helper()
		err := s.db.App.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'applied')
				FROM relationship_outbox`).Scan(&pending, &applied)
		})
		if err != nil {
			t.Fatalf("count outbox rows: %v", err)
		}
		return pending, applied
	}
	_, appliedBefore := outboxRows()

	if err := roles.Grant(ctx, clinicID, actor, uuid.MustParse(nurseID), role.Assignment{Role: "receptionist"}); err != nil {
		t.Fatalf("grant with Keto unreachable after the commit: %v, want success", err)
	}
	pending, _ := outboxRows()
	if pending != 1 {
		t.Fatalf("%d pending outbox rows after the failed apply, want 1", pending)
	}
	var attempts int
	var lastError string
	err := s.db.App.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT attempts, last_error FROM relationship_outbox WHERE state = 'pending'`).Scan(&attempts, &lastError)
	})
	if err != nil || attempts != 1 || lastError == "" {
		t.Errorf("pending row attempts %d, last_error %q, err %v; want 1 attempt with its error", attempts, lastError, err)
	}
	roleExpect(t, "nurse books before the retry", s.browseJSON(nurse, http.MethodPost, base+"/appointments", booking(clinic.Branches[0].ID)), http.StatusForbidden)

	t.Run("revocation with Keto unreachable changes nothing", func(t *testing.T) {
		err := roles.Revoke(ctx, clinicID, actor, uuid.MustParse(nurseID), role.Assignment{Role: "nurse"})
		if !errors.Is(err, identity.ErrPermissionsUnavailable) {
			t.Fatalf("revoke = %v, want ErrPermissionsUnavailable", err)
		}
		var list membersBody
		s.do(http.MethodGet, base+"/members", owner.token, nil).json(t, &list)
		for _, m := range list.Members {
			if m.IdentityID == nurseID && !slices.Equal(m.ClinicRoles, []string{"nurse", "receptionist"}) {
				t.Errorf("nurse's roles after the failed revocation = %v, want nurse and receptionist", m.ClinicRoles)
			}
		}
		if n := s.clinicEvents(clinic.ID, "role.revoked", nurseID); n != 0 {
			t.Errorf("%d role.revoked events after the failed revocation, want 0", n)
		}
	})

	t.Run("clinic creation with Keto unreachable stores nothing", func(t *testing.T) {
		_, err := tenants.NewClinics(s.db.App, deadOutbox).Create(ctx, ownerID, tenants.NewClinic{Name: "Never", BranchName: "Nowhere"})
		if !errors.Is(err, identity.ErrPermissionsUnavailable) {
			t.Fatalf("create = %v, want ErrPermissionsUnavailable", err)
		}
		var registered int
		if err := s.db.Owner.QueryRow(ctx, `SELECT count(*) FROM clinic_registry`).Scan(&registered); err != nil {
			t.Fatalf("count registered clinics: %v", err)
		}
		if registered != 1 {
			t.Errorf("%d registered clinics, want 1 (the clinic created before)", registered)
		}
	})

	result, err := s.roleReconciler(keto).ReconcileOnce(ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if result.Applied != 1 || result.Written != 0 || result.Deleted != 0 {
		t.Errorf("reconcile = %+v, want the pending row applied and no drift left to repair", result)
	}
	pending, applied := outboxRows()
	if pending != 0 || applied != appliedBefore+1 {
		t.Errorf("outbox after the retry: %d pending, %d applied; want 0 and %d", pending, applied, appliedBefore+1)
	}
	roleExpect(t, "nurse books after the retry", s.browseJSON(nurse, http.MethodPost, base+"/appointments", booking(clinic.Branches[0].ID)), http.StatusCreated)
}

// TestPendingWriteCannotUndoLaterRevocation grants with Keto unreachable,
// revokes through the working Keto, and checks that the reconciler does not
// resurrect the grant from its pending outbox row.
func TestPendingWriteCannotUndoLaterRevocation(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	ctx := context.Background()
	owner := s.signUp(true)
	ownerID := uuid.MustParse(s.identityID(owner.token))
	clinic := s.createClinic(owner.token, "Supersede Clinic")
	clinicID := uuid.MustParse(clinic.ID)
	_, nurseID := s.roleInviteAt(owner.token, clinic.ID, newEmail("nurse"), "nurse", "")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	actor := role.Actor{IdentityID: ownerID}
	grant := role.Assignment{Role: "receptionist"}

	dead := identity.NewPermissions(deadKetoURL, deadKetoURL, &http.Client{Timeout: 2 * time.Second})
	if err := role.NewService(s.db.App, tenants.NewOutbox(s.db.App, dead, log), time.Now).Grant(ctx, clinicID, actor, uuid.MustParse(nurseID), grant); err != nil {
		t.Fatalf("grant: %v", err)
	}
	if err := role.NewService(s.db.App, tenants.NewOutbox(s.db.App, keto, log), time.Now).Revoke(ctx, clinicID, actor, uuid.MustParse(nurseID), grant); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	result, err := s.roleReconciler(keto).ReconcileOnce(ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if result.Applied != 0 || result.Written != 0 || result.Deleted != 0 {
		t.Errorf("reconcile = %+v, want nothing: the revocation superseded the pending grant", result)
	}
	if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "book_appointments", nurseID) {
		t.Error("the revoked receptionist role came back")
	}
}

// TestOwnersRevokingEachOtherKeepOne has two owners revoke each other's
// owner role at the same time: exactly one revocation succeeds.
func TestOwnersRevokingEachOtherKeepOne(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	ctx := context.Background()
	first := s.signUp(true)
	firstID := uuid.MustParse(s.identityID(first.token))
	clinic := s.createClinic(first.token, "Two Owner Clinic")
	clinicID := uuid.MustParse(clinic.ID)
	r := s.invite(first.token, clinic.ID, newEmail("co-owner"), "owner")
	if r.status != http.StatusCreated {
		t.Fatalf("invite co-owner: status %d, body %s", r.status, r.body)
	}
	var sent invitationBody
	r.json(t, &sent)
	secondID := uuid.MustParse(sent.IdentityID)
	roles := role.NewService(s.db.App, tenants.NewOutbox(s.db.App, keto, slog.New(slog.NewTextHandler(io.Discard, nil))), time.Now)
	// A member's only role cannot be revoked, so both owners are managers too.
	for _, id := range []uuid.UUID{firstID, secondID} {
		if err := roles.Grant(ctx, clinicID, role.Actor{IdentityID: firstID}, id, role.Assignment{Role: "manager"}); err != nil {
			t.Fatalf("grant manager: %v", err)
		}
	}

	results := make(chan error, 2)
	for _, pair := range [][2]uuid.UUID{{firstID, secondID}, {secondID, firstID}} {
		go func() {
			results <- roles.Revoke(ctx, clinicID, role.Actor{IdentityID: pair[0]}, pair[1], role.Assignment{Role: "owner"})
		}()
	}
	var succeeded, rejected int
	for range 2 {
		switch err := <-results; {
		case err == nil:
			succeeded++
		case errors.Is(err, role.ErrLastOwner), errors.Is(err, role.ErrOwnersOnly):
			// ErrOwnersOnly when the other revocation committed first.
			rejected++
		default:
			t.Errorf("revoke: %v", err)
		}
	}
	if succeeded != 1 || rejected != 1 {
		t.Errorf("%d revocations succeeded and %d were rejected, want 1 and 1", succeeded, rejected)
	}
	owners := 0
	for _, id := range []uuid.UUID{firstID, secondID} {
		if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "edit_subscription", id.String()) {
			owners++
		}
	}
	if owners != 1 {
		t.Errorf("%d owners left in Keto, want 1", owners)
	}
}

// TestServeRunsReconciler starts the server as `vetvault serve` does and
// waits for its reconciler to restore a relationship deleted in Keto.
func TestServeRunsReconciler(t *testing.T) {
	t.Setenv("VETVAULT_ENV", "dev")
	t.Setenv("VETVAULT_ADDR", "127.0.0.1:0")
	t.Setenv("VETVAULT_RECONCILE_INTERVAL", "1s")
	db := tenanttest.New(t)
	t.Setenv("VETVAULT_DATABASE_URL", db.AppURL)
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	keto := roleKeto(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()

	owner := uuid.New()
	clinic, err := tenants.NewClinics(db.App, tenants.NewOutbox(db.App, keto, log)).Create(ctx, owner,
		tenants.NewClinic{Name: "Served Clinic", BranchName: "Main", OwnerEmail: "served-owner@vetvault.test"})
	if err != nil {
		t.Fatalf("create clinic: %v", err)
	}
	ownerTuple := tenants.Grant{IdentityID: owner, Role: identity.RoleOwner}.Relationship(clinic.ID)
	if err := keto.Delete(ctx, ownerTuple); err != nil {
		t.Fatalf("delete the owner relationship: %v", err)
	}
	if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID.String(), "edit_subscription", owner.String()) {
		t.Fatal("the owner relationship is still in Keto after its deletion")
	}

	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serve(serveCtx, log, cfg) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID.String(), "edit_subscription", owner.String()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the served reconciler did not restore the owner relationship within 15 s")
		}
	}
}
