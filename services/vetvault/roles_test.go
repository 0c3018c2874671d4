package main

import (
	"bytes"
	"context"
	"errors"
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
	"vetvault/tenants/tenanttest"
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

func (s *testServer) roleIdentityID(token string) string {
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

// roleBrowse sends a request with a JSON body, or none, with the invitee's
// browser cookies.
func (s *testServer) roleBrowse(person invitee, method, path string, body any) response {
	s.t.Helper()
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(mustJSON(s.t, body))
	}
	request, err := http.NewRequest(method, s.url+path, reader)
	if err != nil {
		s.t.Fatalf("new request: %v", err)
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	resp, err := person.browser.HTTP().Do(request)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: data, header: resp.Header}
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
		roleExpect(t, "clerk books", s.roleBrowse(clerk, http.MethodPost, base+"/appointments", booking(clinic.Branches[0].ID)), http.StatusCreated)
		roleExpect(t, "clerk reads the clinic", s.browse(clerk, http.MethodGet, base), http.StatusOK)
		roleExpect(t, "clerk lists staff", s.browse(clerk, http.MethodGet, base+"/staff"), http.StatusForbidden)
		roleExpect(t, "clerk lists roles", s.browse(clerk, http.MethodGet, base+"/roles"), http.StatusForbidden)
		roleExpect(t, "clerk creates a role", s.roleBrowse(clerk, http.MethodPost, base+"/roles",
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
		roleExpect(t, "book at own branch", s.roleBrowse(desk, http.MethodPost, base+"/branches/"+first+"/appointments", withoutBranch(booking(first))), http.StatusCreated)
		r := s.roleBrowse(desk, http.MethodGet, base+"/branches/"+first+"/appointments?date=2026-12-07", nil)
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
		roleExpect(t, "book through the clinic", s.roleBrowse(desk, http.MethodPost, base+"/appointments", booking(first)), http.StatusForbidden)
		roleExpect(t, "list the other branch", s.browse(desk, http.MethodGet, base+"/branches/"+second+"/appointments"), http.StatusForbidden)
		roleExpect(t, "book at the other branch", s.roleBrowse(desk, http.MethodPost, base+"/branches/"+second+"/appointments", withoutBranch(booking(second))), http.StatusForbidden)
	})

	t.Run("another clinic's path does not reach the branch", func(t *testing.T) {
		otherOwner := s.signUp(true)
		other := s.createClinic(otherOwner.token, "Other Clinic")
		roleExpect(t, "own branch through another clinic", s.browse(desk, http.MethodGet, "/v1/clinics/"+other.ID+"/branches/"+first+"/appointments"), http.StatusNotFound)
		roleExpect(t, "other owner lists this branch", s.do(http.MethodGet, base+"/branches/"+first+"/appointments", otherOwner.token, nil), http.StatusNotFound)
		// The owner is a member of the clinic in the path, so the denied
		// check on the foreign branch returns 403, as for any unknown branch id.
		roleExpect(t, "owner lists a branch of another clinic", s.do(http.MethodGet, base+"/branches/"+other.Branches[0].ID+"/appointments", owner.token, nil), http.StatusForbidden)
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
	roleExpect(t, "manager grants the vet nurse", s.roleBrowse(manager, http.MethodPost, base+"/members/"+vetID+"/roles",
		map[string]string{"role": "nurse"}), http.StatusNoContent)

	before := s.roleTuples(keto, clinic.ID)
	revoked := "Clinic:" + clinic.ID + "#veterinarians@" + vetID
	if !slices.Contains(before, revoked) {
		t.Fatalf("relationships before revocation lack %s:\n%s", revoked, strings.Join(before, "\n"))
	}
	if !roleCheck(t, keto, identity.ClinicNamespace, clinic.ID, "write_records", vetID) {
		t.Fatal("the veterinarian may not write records before the revocation")
	}

	roleExpect(t, "manager revokes veterinarian", s.roleBrowse(manager, http.MethodDelete, base+"/members/"+vetID+"/roles/veterinarian", nil), http.StatusNoContent)

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
		roleExpect(t, "book as nurse only", s.roleBrowse(vet, http.MethodPost, base+"/appointments", booking(branch)), http.StatusForbidden)
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
	ownerID := s.roleIdentityID(owner.token)
	clinic := s.createClinic(owner.token, "Rules Clinic")
	base := "/v1/clinics/" + clinic.ID
	manager, managerID := s.roleInviteAt(owner.token, clinic.ID, newEmail("manager"), "manager", "")
	_, nurseID := s.roleInviteAt(owner.token, clinic.ID, newEmail("nurse"), "nurse", "")
	outsider := s.signUp(true)
	outsiderClinic := s.createClinic(outsider.token, "Outsider Clinic")
	outsiderID := s.roleIdentityID(outsider.token)

	grant := func(token, target string, body map[string]string) response {
		return s.do(http.MethodPost, base+"/members/"+target+"/roles", token, mustJSON(t, body))
	}

	t.Run("only members", func(t *testing.T) {
		roleExpect(t, "grant to another clinic's owner", s.roleBrowse(manager, http.MethodPost, base+"/members/"+outsiderID+"/roles", map[string]string{"role": "nurse"}), http.StatusNotFound)
		roleExpect(t, "grant to an unknown identity", s.roleBrowse(manager, http.MethodPost, base+"/members/"+uuid.NewString()+"/roles", map[string]string{"role": "nurse"}), http.StatusNotFound)
		r := s.roleBrowse(manager, http.MethodPost, base+"/roles", map[string]any{"name": "Desk", "permissions": []string{"view_appointments"}})
		roleExpect(t, "create a role", r, http.StatusCreated)
		var desk roleCustomBody
		r.json(t, &desk)
		roleExpect(t, "add an outsider to a custom role", s.roleBrowse(manager, http.MethodPost, base+"/roles/"+desk.ID+"/members",
			map[string]string{"identity_id": outsiderID}), http.StatusNotFound)
		roleExpect(t, "add to an unknown role", s.roleBrowse(manager, http.MethodPost, base+"/roles/"+uuid.NewString()+"/members",
			map[string]string{"identity_id": nurseID}), http.StatusNotFound)
		roleExpect(t, "revoke a role not held", s.roleBrowse(manager, http.MethodDelete, base+"/members/"+nurseID+"/roles/receptionist", nil), http.StatusNotFound)
		roleExpect(t, "grant a role held", s.roleBrowse(manager, http.MethodPost, base+"/members/"+nurseID+"/roles", map[string]string{"role": "nurse"}), http.StatusConflict)
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
		roleExpect(t, "manager grants owner", s.roleBrowse(manager, http.MethodPost, base+"/members/"+nurseID+"/roles", map[string]string{"role": "owner"}), http.StatusForbidden)
		roleExpect(t, "manager revokes owner", s.roleBrowse(manager, http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", nil), http.StatusForbidden)
		roleExpect(t, "last owner demotes self", s.do(http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", owner.token, nil), http.StatusConflict)
		roleExpect(t, "owner takes a second role", grant(owner.token, ownerID, map[string]string{"role": "veterinarian"}), http.StatusNoContent)
		r := s.do(http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", owner.token, nil)
		roleExpect(t, "last owner with another role demotes self", r, http.StatusConflict)
		if !strings.Contains(string(r.body), "last owner") {
			t.Errorf("problem %s does not say the last owner must stay", r.body)
		}
		roleExpect(t, "owner makes the manager owner", grant(owner.token, managerID, map[string]string{"role": "owner"}), http.StatusNoContent)
		roleExpect(t, "owner steps down", s.do(http.MethodDelete, base+"/members/"+ownerID+"/roles/owner", owner.token, nil), http.StatusNoContent)
		roleExpect(t, "new owner is the last one", s.roleBrowse(manager, http.MethodDelete, base+"/members/"+managerID+"/roles/owner", nil), http.StatusConflict)
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
	ownerID := uuid.MustParse(s.roleIdentityID(owner.token))
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
	roleExpect(t, "nurse books before the retry", s.roleBrowse(nurse, http.MethodPost, base+"/appointments", booking(clinic.Branches[0].ID)), http.StatusForbidden)

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
	roleExpect(t, "nurse books after the retry", s.roleBrowse(nurse, http.MethodPost, base+"/appointments", booking(clinic.Branches[0].ID)), http.StatusCreated)
}

// TestPendingWriteCannotUndoLaterRevocation grants with Keto unreachable,
// revokes through the working Keto, and checks that the reconciler does not
// resurrect the grant from its pending outbox row.
func TestPendingWriteCannotUndoLaterRevocation(t *testing.T) {
	s := newTestServer(t)
	keto := roleKeto(t)
	ctx := context.Background()
	owner := s.signUp(true)
	ownerID := uuid.MustParse(s.roleIdentityID(owner.token))
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
	firstID := uuid.MustParse(s.roleIdentityID(first.token))
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
