package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/services/api"
	"vetvault/services/audit"
	"vetvault/services/role"
	"vetvault/tenants"
)

// The role tests run the whole server against the real stack and look at
// Keto directly, through the same client the server uses, to prove what
// the API promises about relationships.

// roleKeto returns a Keto client on the test stack.
func roleKeto(t *testing.T) *identity.Permissions {
	t.Helper()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, &http.Client{Timeout: 10 * time.Second})
}

func (s *testServer) identityID(token string) string {
	s.t.Helper()
	var me struct {
		IdentityID string `json:"identity_id"`
	}
	s.do(http.MethodGet, "/v1/me", token, nil).json(s.t, &me)
	return me.IdentityID
}

// roleInviteAt invites email with role at branchID, or for the whole clinic
// when branchID is "", accepts the invitation and returns the invitee and
// their identity id.
func (s *testServer) roleInviteAt(token, clinicID, email, roleName, branchID string) (invitee, string) {
	s.t.Helper()
	body := map[string]string{"email": email, "role": roleName}
	if branchID != "" {
		body["branch_id"] = branchID
	}
	r := s.do(http.MethodPost, "/v1/clinics/"+clinicID+"/invitations", token, mustJSON(s.t, body))
	if r.status != http.StatusCreated {
		s.t.Fatalf("invite %s: status %d, body %s", roleName, r.status, r.body)
	}
	var sent invitationBody
	r.json(s.t, &sent)
	return s.accept(email), sent.IdentityID
}

// roleExpect fails the test unless r has status want.
func roleExpect(t *testing.T, step string, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Errorf("%s: status %d, want %d; body %s", step, r.status, want, r.body)
	}
}

// roleTuples lists, sorted, the relationships Keto stores on the clinic, its
// branches and its custom roles: the objects the reconciler compares.
func (s *testServer) roleTuples(keto *identity.Permissions, clinicID string) []string {
	s.t.Helper()
	ctx := context.Background()
	objects := []struct{ namespace, id string }{{identity.ClinicNamespace, clinicID}}
	err := s.db.App.InClinic(ctx, uuid.MustParse(clinicID), func(tx pgx.Tx) error {
		for _, q := range []struct{ namespace, sql string }{
			{identity.BranchNamespace, `SELECT id FROM branches`},
			{identity.ClinicRoleNamespace, `SELECT id FROM clinic_roles`},
		} {
			rows, err := tx.Query(ctx, q.sql)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
			if err != nil {
				return err
			}
			for _, id := range ids {
				objects = append(objects, struct{ namespace, id string }{q.namespace, id.String()})
			}
		}
		return nil
	})
	if err != nil {
		s.t.Fatalf("list objects of clinic %s: %v", clinicID, err)
	}
	var tuples []string
	for _, o := range objects {
		stored, err := keto.Relationships(ctx, o.namespace, o.id)
		if err != nil {
			s.t.Fatalf("list relationships of %s:%s: %v", o.namespace, o.id, err)
		}
		for _, r := range stored {
			tuples = append(tuples, r.String())
		}
	}
	slices.Sort(tuples)
	return tuples
}

// roleCheck reports whether Keto allows subject permission on namespace:object.
func roleCheck(t *testing.T, keto *identity.Permissions, namespace, object, permission, subject string) bool {
	t.Helper()
	allowed, err := keto.Check(context.Background(), namespace, object, permission, uuid.MustParse(subject))
	if err != nil {
		t.Fatalf("check %s on %s:%s: %v", permission, namespace, object, err)
	}
	return allowed
}

// roleReconciler returns a reconciler on the test database and keto.
func (s *testServer) roleReconciler(keto tenants.RelationshipStore) *tenants.Reconciler {
	return tenants.NewReconciler(s.db.App, keto, audit.Append, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

type roleCustomBody struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Permissions []string `json:"permissions"`
	Members     int      `json:"members"`
}

type membersBody struct {
	Members []struct {
		IdentityID  string   `json:"identity_id"`
		Active      bool     `json:"active"`
		ClinicRoles []string `json:"clinic_roles"`
		BranchRoles []struct {
			BranchID string `json:"branch_id"`
			Role     string `json:"role"`
		} `json:"branch_roles"`
		CustomRoles []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"custom_roles"`
	} `json:"members"`
}

func TestCustomRoleFrontDeskWithBilling(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Custom Role Clinic")
	base := "/v1/clinics/" + clinic.ID

	r := s.do(http.MethodPost, base+"/roles", owner.token, mustJSON(t, map[string]any{
		"name":        "Front desk with billing",
		"permissions": []string{"view_invoices", "view_appointments", "book_appointments", "view_contacts", "view_appointments"},
	}))
	if r.status != http.StatusCreated {
		t.Fatalf("create role: status %d, body %s", r.status, r.body)
	}
	var desk roleCustomBody
	r.json(t, &desk)
	if want := []string{"view_appointments", "book_appointments", "view_contacts", "view_invoices"}; !slices.Equal(desk.Permissions, want) {
		t.Errorf("stored permissions = %v, want %v (deduplicated, in OPL order)", desk.Permissions, want)
	}
	if got, want := r.header.Get("Location"), base+"/roles/"+desk.ID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}

	deskEmail, nurseEmail := newEmail("desk"), newEmail("nurse")
	clerk, clerkID := s.roleInviteAt(owner.token, clinic.ID, deskEmail, "receptionist", "")
	nurse, nurseID := s.roleInviteAt(owner.token, clinic.ID, nurseEmail, "nurse", "")

	roleExpect(t, "revoke the clerk's only role", s.do(http.MethodDelete, base+"/members/"+clerkID+"/roles/receptionist", owner.token, nil), http.StatusConflict)
	roleExpect(t, "add clerk to the role", s.do(http.MethodPost, base+"/roles/"+desk.ID+"/members", owner.token,
		mustJSON(t, map[string]string{"identity_id": clerkID})), http.StatusNoContent)
	roleExpect(t, "add clerk twice", s.do(http.MethodPost, base+"/roles/"+desk.ID+"/members", owner.token,
		mustJSON(t, map[string]string{"identity_id": clerkID})), http.StatusConflict)
	roleExpect(t, "revoke the clerk's receptionist role", s.do(http.MethodDelete, base+"/members/"+clerkID+"/roles/receptionist", owner.token, nil), http.StatusNoContent)

	t.Run("member holds exactly the role's permissions", func(t *testing.T) {
		roleExpect(t, "clerk lists appointments", s.browse(clerk, http.MethodGet, base+"/appointments"), http.StatusOK)
		roleExpect(t, "clerk books", s.browseJSON(clerk, http.MethodPost, base+"/appointments", booking(clinic.Branches[0].ID)), http.StatusCreated)
		roleExpect(t, "clerk reads the clinic", s.browse(clerk, http.MethodGet, base), http.StatusOK)
		roleExpect(t, "clerk lists staff", s.browse(clerk, http.MethodGet, base+"/staff"), http.StatusForbidden)
		roleExpect(t, "clerk lists roles", s.browse(clerk, http.MethodGet, base+"/roles"), http.StatusForbidden)
		roleExpect(t, "clerk creates a role", s.browseJSON(clerk, http.MethodPost, base+"/roles",
			map[string]any{"name": "Escalation", "permissions": []string{"view_reports"}}), http.StatusForbidden)

		// Invoices and reports have no operations yet, so the checks go to Keto.
		for permission, want := range map[string]bool{
			"view_invoices": true, "view_contacts": true, "view_appointments": true, "book_appointments": true,
			"create_invoices": false, "edit_invoices": false, "view_reports": false, "edit_contacts": false,
			"view_records": false, "view_pets": false, "manage_roles": false, "manage_staff": false,
		} {
			if got := roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, permission, clerkID); got != want {
				t.Errorf("clerk %s = %v, want %v", permission, got, want)
			}
		}
		if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "view_invoices", nurseID) {
			t.Error("the nurse, outside the role, may view invoices")
		}
		roleExpect(t, "nurse still lists appointments", s.browse(nurse, http.MethodGet, base+"/appointments"), http.StatusOK)
	})

	t.Run("members list shows the custom role", func(t *testing.T) {
		var list membersBody
		s.do(http.MethodGet, base+"/members", owner.token, nil).json(t, &list)
		found := false
		for _, m := range list.Members {
			if m.IdentityID != clerkID {
				continue
			}
			found = true
			if len(m.ClinicRoles) != 0 || len(m.BranchRoles) != 0 || len(m.CustomRoles) != 1 || m.CustomRoles[0].Name != "Front desk with billing" {
				t.Errorf("clerk's roles = %+v, want only the custom role", m)
			}
		}
		if !found {
			t.Errorf("members list %+v lacks the clerk", list.Members)
		}
	})

	t.Run("editing rewrites the grants", func(t *testing.T) {
		r := s.do(http.MethodPatch, base+"/roles/"+desk.ID, owner.token, mustJSON(t, map[string]any{
			"permissions": []string{"view_appointments", "book_appointments", "view_contacts", "view_pets"},
		}))
		if r.status != http.StatusOK {
			t.Fatalf("edit permissions: status %d, body %s", r.status, r.body)
		}
		if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "view_invoices", clerkID) {
			t.Error("clerk may still view invoices after the role lost view_invoices")
		}
		if !roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "view_pets", clerkID) {
			t.Error("clerk may not view pets after the role gained view_pets")
		}
		var grants []string
		for _, tuple := range s.roleTuples(keto, clinic.ID) {
			if strings.Contains(tuple, "#grants_") {
				grants = append(grants, tuple)
			}
		}
		var want []string
		for _, p := range []string{"book_appointments", "view_appointments", "view_contacts", "view_pets"} {
			want = append(want, "Clinic:"+clinic.ID+"#grants_"+p+"@ClinicRole:"+desk.ID+"#members")
		}
		if !slices.Equal(grants, want) {
			t.Errorf("grants_* relationships =\n%s\nwant\n%s", strings.Join(grants, "\n"), strings.Join(want, "\n"))
		}

		roleExpect(t, "rename", s.do(http.MethodPatch, base+"/roles/"+desk.ID, owner.token,
			mustJSON(t, map[string]any{"name": "Front desk"})), http.StatusOK)
		other := s.do(http.MethodPost, base+"/roles", owner.token, mustJSON(t, map[string]any{"name": "Billing", "permissions": []string{"view_invoices"}}))
		roleExpect(t, "create a second role", other, http.StatusCreated)
		var billing roleCustomBody
		other.json(t, &billing)
		roleExpect(t, "rename to a taken name in other case", s.do(http.MethodPatch, base+"/roles/"+billing.ID, owner.token,
			mustJSON(t, map[string]any{"name": "FRONT DESK"})), http.StatusConflict)
	})

	t.Run("every change is audited", func(t *testing.T) {
		for action, want := range map[string]int{"custom_role.created": 2, "custom_role.updated": 2} {
			var n int
			err := s.db.App.InClinic(context.Background(), uuid.MustParse(clinic.ID), func(tx pgx.Tx) error {
				return tx.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = $1`, action).Scan(&n)
			})
			if err != nil {
				t.Fatalf("count %s: %v", action, err)
			}
			if n != want {
				t.Errorf("%d %s audit events, want %d", n, action, want)
			}
		}
		if n := s.clinicEvents(clinic.ID, "role.granted", clerkID); n != 2 {
			t.Errorf("%d role.granted events for the clerk, want 2 (invitation and custom role)", n)
		}
		if n := s.clinicEvents(clinic.ID, "role.revoked", clerkID); n != 1 {
			t.Errorf("%d role.revoked events for the clerk, want 1", n)
		}
	})

	t.Run("deleting the role", func(t *testing.T) {
		roleExpect(t, "delete while it is the clerk's only role", s.do(http.MethodDelete, base+"/roles/"+desk.ID, owner.token, nil), http.StatusConflict)
		roleExpect(t, "give the clerk nurse", s.do(http.MethodPost, base+"/members/"+clerkID+"/roles", owner.token,
			mustJSON(t, map[string]string{"role": "nurse"})), http.StatusNoContent)
		roleExpect(t, "delete", s.do(http.MethodDelete, base+"/roles/"+desk.ID, owner.token, nil), http.StatusNoContent)
		roleExpect(t, "delete again", s.do(http.MethodDelete, base+"/roles/"+desk.ID, owner.token, nil), http.StatusNotFound)
		for _, tuple := range s.roleTuples(keto, clinic.ID) {
			if strings.Contains(tuple, desk.ID) {
				t.Errorf("relationship %s of the deleted role is still in Keto", tuple)
			}
		}
		// Nurses may not book, the deleted role could.
		if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "book_appointments", clerkID) {
			t.Error("clerk may still book through the deleted role")
		}
	})
}

func TestBranchReceptionistSeesOwnBranch(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Two Branch Clinic")
	base := "/v1/clinics/" + clinic.ID
	first := clinic.Branches[0].ID

	// A second branch, written as a branch-creating operation would: the row
	// here, its Keto links by the reconciler.
	second := uuid.NewString()
	err := s.db.App.InClinic(context.Background(), uuid.MustParse(clinic.ID), func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `INSERT INTO branches (tenant_id, id, name) VALUES ($1, $2, 'Koramangala')`, clinic.ID, second)
		return err
	})
	if err != nil {
		t.Fatalf("insert second branch: %v", err)
	}
	if _, err := s.roleReconciler(keto).ReconcileOnce(context.Background()); err != nil {
		t.Fatalf("reconcile: %v", err)
	}

	desk, deskID := s.roleInviteAt(owner.token, clinic.ID, newEmail("branch-desk"), "receptionist", first)

	t.Run("books and lists at own branch", func(t *testing.T) {
		roleExpect(t, "book at own branch", s.browseJSON(desk, http.MethodPost, base+"/branches/"+first+"/appointments", withoutBranch(booking(first))), http.StatusCreated)
		r := s.browseJSON(desk, http.MethodGet, base+"/branches/"+first+"/appointments?date=2026-12-07", nil)
		roleExpect(t, "list own branch", r, http.StatusOK)
		var listed appointmentList
		r.json(t, &listed)
		if len(listed.Appointments) != 1 {
			t.Errorf("own branch lists %d appointments, want 1", len(listed.Appointments))
		}
		roleExpect(t, "read the clinic", s.browse(desk, http.MethodGet, base), http.StatusOK)
	})

	t.Run("no other branch and not the whole clinic", func(t *testing.T) {
		roleExpect(t, "list the clinic's schedule", s.browse(desk, http.MethodGet, base+"/appointments"), http.StatusForbidden)
		roleExpect(t, "book through the clinic", s.browseJSON(desk, http.MethodPost, base+"/appointments", booking(first)), http.StatusForbidden)
		roleExpect(t, "list the other branch", s.browse(desk, http.MethodGet, base+"/branches/"+second+"/appointments"), http.StatusForbidden)
		roleExpect(t, "book at the other branch", s.browseJSON(desk, http.MethodPost, base+"/branches/"+second+"/appointments", withoutBranch(booking(second))), http.StatusForbidden)
	})

	t.Run("another clinic's path does not reach the branch", func(t *testing.T) {
		otherOwner := s.signUp(true)
		other := s.createClinic(otherOwner.token, "Other Clinic")
		roleExpect(t, "own branch through another clinic", s.browse(desk, http.MethodGet, "/v1/clinics/"+other.ID+"/branches/"+first+"/appointments"), http.StatusNotFound)
		roleExpect(t, "other owner lists this branch", s.do(http.MethodGet, base+"/branches/"+first+"/appointments", otherOwner.token, nil), http.StatusNotFound)
		// A branch that is not the clinic's is not found, even for the owner.
		roleExpect(t, "owner lists a branch of another clinic", s.do(http.MethodGet, base+"/branches/"+other.Branches[0].ID+"/appointments", owner.token, nil), http.StatusNotFound)
	})

	t.Run("clinic-wide owner reaches every branch", func(t *testing.T) {
		roleExpect(t, "owner lists the first branch", s.do(http.MethodGet, base+"/branches/"+first+"/appointments", owner.token, nil), http.StatusOK)
		roleExpect(t, "owner books at the second branch", s.do(http.MethodPost, base+"/branches/"+second+"/appointments", owner.token,
			mustJSON(t, withoutBranch(booking(second)))), http.StatusCreated)
	})

	t.Run("members list shows the branch role", func(t *testing.T) {
		var list membersBody
		s.do(http.MethodGet, base+"/members", owner.token, nil).json(t, &list)
		for _, m := range list.Members {
			if m.IdentityID == deskID && (len(m.BranchRoles) != 1 || m.BranchRoles[0].BranchID != first || m.BranchRoles[0].Role != "receptionist" || len(m.ClinicRoles) != 0) {
				t.Errorf("branch receptionist's roles = %+v, want receptionist at %s only", m, first)
			}
		}
	})

	t.Run("granted the second branch too", func(t *testing.T) {
		roleExpect(t, "grant", s.do(http.MethodPost, base+"/members/"+deskID+"/roles", owner.token,
			mustJSON(t, map[string]string{"role": "receptionist", "branch_id": second})), http.StatusNoContent)
		roleExpect(t, "list the second branch", s.browse(desk, http.MethodGet, base+"/branches/"+second+"/appointments"), http.StatusOK)
		roleExpect(t, "revoke at the first branch", s.do(http.MethodDelete, base+"/members/"+deskID+"/roles/receptionist?branch_id="+first, owner.token, nil), http.StatusNoContent)
		roleExpect(t, "list the first branch after revocation", s.browse(desk, http.MethodGet, base+"/branches/"+first+"/appointments"), http.StatusForbidden)
		roleExpect(t, "list the second branch still", s.browse(desk, http.MethodGet, base+"/branches/"+second+"/appointments"), http.StatusOK)
	})
}

func withoutBranch(body map[string]any) map[string]any {
	delete(body, "branch_id")
	return body
}

func TestRevocationLeavesOtherRelationshipsIntact(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Revocation Clinic")
	base := "/v1/clinics/" + clinic.ID
	branch := clinic.Branches[0].ID

	manager, _ := s.roleInviteAt(owner.token, clinic.ID, newEmail("manager"), "manager", "")
	_, deskID := s.roleInviteAt(owner.token, clinic.ID, newEmail("desk"), "receptionist", branch)
	vet, vetID := s.roleInviteAt(owner.token, clinic.ID, newEmail("vet"), "veterinarian", "")
	var billing roleCustomBody
	s.do(http.MethodPost, base+"/roles", owner.token, mustJSON(t, map[string]any{
		"name": "Billing", "permissions": []string{"view_invoices", "view_reports"},
	})).json(t, &billing)
	for _, member := range []string{vetID, deskID} {
		roleExpect(t, "add to billing", s.do(http.MethodPost, base+"/roles/"+billing.ID+"/members", owner.token,
			mustJSON(t, map[string]string{"identity_id": member})), http.StatusNoContent)
	}
	roleExpect(t, "manager grants the vet nurse", s.browseJSON(manager, http.MethodPost, base+"/members/"+vetID+"/roles",
		map[string]string{"role": "nurse"}), http.StatusNoContent)

	before := s.roleTuples(keto, clinic.ID)
	revoked := "Clinic:" + clinic.ID + "#veterinarians@" + vetID
	if !slices.Contains(before, revoked) {
		t.Fatalf("relationships before revocation lack %s:\n%s", revoked, strings.Join(before, "\n"))
	}
	if !roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "write_records", vetID) {
		t.Fatal("the veterinarian may not write records before the revocation")
	}

	roleExpect(t, "manager revokes veterinarian", s.browseJSON(manager, http.MethodDelete, base+"/members/"+vetID+"/roles/veterinarian", nil), http.StatusNoContent)

	t.Run("only that relationship is gone", func(t *testing.T) {
		after := s.roleTuples(keto, clinic.ID)
		want := slices.DeleteFunc(slices.Clone(before), func(tuple string) bool { return tuple == revoked })
		if !slices.Equal(after, want) {
			t.Errorf("relationships after revoking %s =\n%s\nwant\n%s", revoked, strings.Join(after, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("takes effect on the next request", func(t *testing.T) {
		if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "write_records", vetID) {
			t.Error("the former veterinarian may still write records")
		}
		// Nurse and billing remain: the schedule is still visible, the staff list is not.
		roleExpect(t, "list appointments as nurse", s.browse(vet, http.MethodGet, base+"/appointments"), http.StatusOK)
		roleExpect(t, "book as nurse only", s.browseJSON(vet, http.MethodPost, base+"/appointments", booking(branch)), http.StatusForbidden)
	})

	t.Run("removing from a custom role", func(t *testing.T) {
		before := s.roleTuples(keto, clinic.ID)
		roleExpect(t, "remove the desk from billing", s.do(http.MethodDelete, base+"/roles/"+billing.ID+"/members/"+deskID, owner.token, nil), http.StatusNoContent)
		after := s.roleTuples(keto, clinic.ID)
		removed := "ClinicRole:" + billing.ID + "#members@" + deskID
		want := slices.DeleteFunc(slices.Clone(before), func(tuple string) bool { return tuple == removed })
		if !slices.Equal(after, want) || len(after) != len(before)-1 {
			t.Errorf("relationships after removing %s =\n%s\nwant\n%s", removed, strings.Join(after, "\n"), strings.Join(want, "\n"))
		}
		if roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "view_invoices", deskID) {
			t.Error("the desk may still view invoices")
		}
		if !roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "view_invoices", vetID) {
			t.Error("the vet lost view_invoices when the desk left billing")
		}
	})
}

func TestRoleRules(t *testing.T) {
	s := newTestServer(t)
	owner := s.signUp(true)
	ownerID := s.identityID(owner.token)
	clinic := s.createClinic(owner.token, "Rules Clinic")
	base := "/v1/clinics/" + clinic.ID
	manager, managerID := s.roleInviteAt(owner.token, clinic.ID, newEmail("manager"), "manager", "")
	_, nurseID := s.roleInviteAt(owner.token, clinic.ID, newEmail("nurse"), "nurse", "")
	outsider := s.signUp(true)
	outsiderClinic := s.createClinic(outsider.token, "Outsider Clinic")
	outsiderID := s.identityID(outsider.token)

	grant := func(token, target string, body map[string]string) response {
		return s.do(http.MethodPost, base+"/members/"+target+"/roles", token, mustJSON(t, body))
	}

	t.Run("only members", func(t *testing.T) {
		roleExpect(t, "grant to another clinic's owner", s.browseJSON(manager, http.MethodPost, base+"/members/"+outsiderID+"/roles", map[string]string{"role": "nurse"}), http.StatusNotFound)
		roleExpect(t, "grant to an unknown identity", s.browseJSON(manager, http.MethodPost, base+"/members/"+uuid.NewString()+"/roles", map[string]string{"role": "nurse"}), http.StatusNotFound)
		r := s.browseJSON(manager, http.MethodPost, base+"/roles", map[string]any{"name": "Desk", "permissions": []string{"view_appointments"}})
		roleExpect(t, "create a role", r, http.StatusCreated)
		var desk roleCustomBody
		r.json(t, &desk)
		roleExpect(t, "add an outsider to a custom role", s.browseJSON(manager, http.MethodPost, base+"/roles/"+desk.ID+"/members",
			map[string]string{"identity_id": outsiderID}), http.StatusNotFound)
		roleExpect(t, "add to an unknown role", s.browseJSON(manager, http.MethodPost, base+"/roles/"+uuid.NewString()+"/members",
			map[string]string{"identity_id": nurseID}), http.StatusNotFound)
		roleExpect(t, "revoke a role not held", s.browseJSON(manager, http.MethodDelete, base+"/members/"+nurseID+"/roles/receptionist", nil), http.StatusNotFound)
		roleExpect(t, "grant a role held", s.browseJSON(manager, http.MethodPost, base+"/members/"+nurseID+"/roles", map[string]string{"role": "nurse"}), http.StatusConflict)
		roleExpect(t, "outsider changes this clinic's roles", grant(outsider.token, nurseID, map[string]string{"role": "manager"}), http.StatusNotFound)
		roleExpect(t, "grant through the outsider's clinic", s.do(http.MethodPost, "/v1/clinics/"+outsiderClinic.ID+"/members/"+nurseID+"/roles",
			outsider.token, mustJSON(t, map[string]string{"role": "nurse"})), http.StatusNotFound)
	})

	t.Run("bad input names the field", func(t *testing.T) {
		tests := []struct {
			name, method, path string
			body               any
			field              string
		}{
			{"unknown role", http.MethodPost, base + "/members/" + nurseID + "/roles", map[string]string{"role": "janitor"}, "body.role"},
			{"owner at a branch", http.MethodPost, base + "/members/" + nurseID + "/roles", map[string]string{"role": "owner", "branch_id": clinic.Branches[0].ID}, "body.branch_id"},
			{"unknown branch", http.MethodPost, base + "/members/" + nurseID + "/roles", map[string]string{"role": "nurse", "branch_id": uuid.NewString()}, "body.branch_id"},
			{"branch not a uuid", http.MethodPost, base + "/members/" + nurseID + "/roles", map[string]string{"role": "nurse", "branch_id": "main"}, "body.branch_id"},
			{"revoke unknown role", http.MethodDelete, base + "/members/" + nurseID + "/roles/janitor", nil, "path.role"},
			{"blank name", http.MethodPost, base + "/roles", map[string]any{"name": "   ", "permissions": []string{"view_pets"}}, "body.name"},
			{"long name", http.MethodPost, base + "/roles", map[string]any{"name": strings.Repeat("x", 81), "permissions": []string{"view_pets"}}, "body.name"},
			{"no permissions", http.MethodPost, base + "/roles", map[string]any{"name": "Empty", "permissions": []string{}}, "body.permissions"},
			{"permission not grantable", http.MethodPost, base + "/roles", map[string]any{"name": "Boss", "permissions": []string{"manage_roles"}}, "body.permissions"},
			{"missing permissions", http.MethodPost, base + "/roles", map[string]any{"name": "Nothing"}, "body.permissions"},
			{"edit with nothing", http.MethodPatch, base + "/roles/" + uuid.NewString(), map[string]any{}, "body.name"},
			{"member id not a uuid", http.MethodPost, base + "/roles/" + uuid.NewString() + "/members", map[string]string{"identity_id": "nurse"}, "body.identity_id"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var body []byte
				if tt.body != nil {
					body = mustJSON(t, tt.body)
				}
				r := s.do(tt.method, tt.path, owner.token, body)
				if r.status != http.StatusUnprocessableEntity {
					t.Fatalf("status %d, want 422; body %s", r.status, r.body)
				}
				var p problem
				r.json(t, &p)
				found := false
				for _, e := range p.Errors {
					found = found || strings.HasPrefix(e.Location, tt.field)
				}
				if !found {
					t.Errorf("problem %s does not name %s", r.body, tt.field)
				}
			})
		}
		var list membersBody
		s.do(http.MethodGet, base+"/members", owner.token, nil).json(t, &list)
		for _, m := range list.Members {
			if m.IdentityID == nurseID && (len(m.ClinicRoles) != 1 || len(m.BranchRoles) != 0 || len(m.CustomRoles) != 0) {
				t.Errorf("nurse's roles after bad requests = %+v, want nurse only", m)
			}
		}
	})

	t.Run("listing needs view_staff", func(t *testing.T) {
		nurseSession := s.roleBrowseAsNurse(t, owner.token, clinic.ID)
		roleExpect(t, "nurse lists roles", s.browse(nurseSession, http.MethodGet, base+"/roles"), http.StatusForbidden)
		roleExpect(t, "nurse lists members", s.browse(nurseSession, http.MethodGet, base+"/members"), http.StatusForbidden)
		r := s.browse(manager, http.MethodGet, base+"/roles")
		roleExpect(t, "manager lists roles", r, http.StatusOK)
		var catalog struct {
			BuiltIn []struct {
				Role string `json:"role"`
			} `json:"built_in"`
			Custom               []roleCustomBody `json:"custom"`
			GrantablePermissions []string         `json:"grantable_permissions"`
		}
		r.json(t, &catalog)
		if len(catalog.BuiltIn) != 5 || len(catalog.Custom) != 1 || len(catalog.GrantablePermissions) != len(role.GrantablePermissions) {
			t.Errorf("catalog = %s, want 5 built-in roles, 1 custom role and every grantable permission", r.body)
		}
	})

	t.Run("owners", func(t *testing.T) {
		roleExpect(t, "manager grants owner", s.browseJSON(manager, http.MethodPost, base+"/members/"+nurseID+"/roles", map[string]string{"role": "owner"}), http.StatusForbidden)
		roleExpect(t, "manager revokes owner", s.browseJSON(manager, http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", nil), http.StatusForbidden)
		roleExpect(t, "last owner demotes self", s.do(http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", owner.token, nil), http.StatusConflict)
		roleExpect(t, "owner takes a second role", grant(owner.token, ownerID, map[string]string{"role": "veterinarian"}), http.StatusNoContent)
		r := s.do(http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", owner.token, nil)
		roleExpect(t, "last owner with another role demotes self", r, http.StatusConflict)
		if !strings.Contains(string(r.body), "last owner") {
			t.Errorf("problem %s does not say the last owner must stay", r.body)
		}
		roleExpect(t, "owner makes the manager owner", grant(owner.token, managerID, map[string]string{"role": "owner"}), http.StatusNoContent)
		roleExpect(t, "owner steps down", s.do(http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", owner.token, nil), http.StatusNoContent)
		roleExpect(t, "new owner is the last one", s.browseJSON(manager, http.MethodDelete, base+"/members/"+managerID+"/roles/owner", nil), http.StatusConflict)
	})
}

// roleBrowseAsNurse invites and accepts a fresh nurse.
func (s *testServer) roleBrowseAsNurse(t *testing.T, token, clinicID string) invitee {
	t.Helper()
	nurse, _ := s.roleInviteAt(token, clinicID, newEmail("listing-nurse"), "nurse", "")
	return nurse
}

// TestRoleChangesDeclareAccess checks every role operation's declaration:
// changes need manage_roles and a recent sign-in, listings view_staff.
func TestRoleChangesDeclareAccess(t *testing.T) {
	humaAPI := api.New(http.NewServeMux(), api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now})
	want := map[string]api.Access{
		"list-roles":                {Audience: api.AudienceStaff, Permission: "view_staff"},
		"list-members":              {Audience: api.AudienceStaff, Permission: "view_staff"},
		"grant-role":                {Audience: api.AudienceStaff, Permission: "manage_roles", Recent: true},
		"revoke-role":               {Audience: api.AudienceStaff, Permission: "manage_roles", Recent: true},
		"create-custom-role":        {Audience: api.AudienceStaff, Permission: "manage_roles", Recent: true},
		"update-custom-role":        {Audience: api.AudienceStaff, Permission: "manage_roles", Recent: true},
		"delete-custom-role":        {Audience: api.AudienceStaff, Permission: "manage_roles", Recent: true},
		"add-custom-role-member":    {Audience: api.AudienceStaff, Permission: "manage_roles", Recent: true},
		"remove-custom-role-member": {Audience: api.AudienceStaff, Permission: "manage_roles", Recent: true},
		"list-branch-appointments":  {Audience: api.AudienceStaff, Permission: "view_appointments", Object: api.ObjectBranch},
		"book-branch-appointment":   {Audience: api.AudienceStaff, Permission: "book_appointments", Object: api.ObjectBranch},
	}
	found := map[string]bool{}
	for _, item := range humaAPI.OpenAPI().Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil {
				continue
			}
			expected, ok := want[op.OperationID]
			if !ok {
				continue
			}
			found[op.OperationID] = true
			if got, _ := api.AccessOf(op); got != expected {
				t.Errorf("%s declares %+v, want %+v", op.OperationID, got, expected)
			}
		}
	}
	for id := range want {
		if !found[id] {
			t.Errorf("operation %s is not registered", id)
		}
	}
}
