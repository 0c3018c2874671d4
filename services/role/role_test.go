package role_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/role"
	"vetvault/tenants"
)

// clinicPermissions are every permission the OPL defines on Clinic besides
// view, which any role holds.
var clinicPermissions = []string{
	"view_appointments", "book_appointments", "view_contacts", "edit_contacts", "view_pets", "create_pets",
	"edit_pets", "view_records", "add_vitals", "write_records", "view_invoices", "create_invoices",
	"edit_invoices", "view_reports", "view_staff", "view_audit", "manage_staff", "manage_roles",
	"view_subscription", "edit_subscription",
}

var branchPermissions = []string{"view_appointments", "book_appointments"}

func permissions(t *testing.T) *identity.Permissions {
	t.Helper()
	read, write := os.Getenv("VETVAULT_KETO_READ_URL"), os.Getenv("VETVAULT_KETO_WRITE_URL")
	if read == "" {
		read = "http://127.0.0.1:4466"
	}
	if write == "" {
		write = "http://127.0.0.1:4467"
	}
	return identity.NewPermissions(read, write, &http.Client{Timeout: 10 * time.Second})
}

// write creates the relationships and deletes them when the test ends.
func write(t *testing.T, keto *identity.Permissions, relationships ...identity.Relationship) {
	t.Helper()
	for _, r := range relationships {
		if err := keto.Write(context.Background(), r); err != nil {
			t.Fatalf("write %s (is Keto running? start it with infra/scripts/stack.sh services): %v", r, err)
		}
		t.Cleanup(func() { _ = keto.Delete(context.Background(), r) })
	}
}

// TestBuiltInsMatchKeto grants each built-in role in a fresh clinic, and at
// a fresh branch, and checks every permission in Keto, so the table the API
// returns cannot drift from the OPL.
func TestBuiltInsMatchKeto(t *testing.T) {
	keto := permissions(t)
	ctx := context.Background()
	for _, builtIn := range role.BuiltIns {
		t.Run(string(builtIn.Role)+" for the whole clinic", func(t *testing.T) {
			clinicID, member := uuid.New(), uuid.New()
			write(t, keto, tenants.Grant{IdentityID: member, Role: builtIn.Role}.Relationship(clinicID))
			for _, permission := range clinicPermissions {
				allowed, err := keto.Check(ctx, identity.ClinicNamespace, clinicID.String(), permission, member)
				if err != nil {
					t.Fatalf("check %s: %v", permission, err)
				}
				if want := slices.Contains(builtIn.Permissions, permission); allowed != want {
					t.Errorf("%s: Keto allows %v, table says %v", permission, allowed, want)
				}
			}
		})
		if builtIn.BranchPermissions == nil {
			continue
		}
		t.Run(string(builtIn.Role)+" at one branch", func(t *testing.T) {
			clinicID, branchID, member := uuid.New(), uuid.New(), uuid.New()
			write(t, keto, tenants.BranchLinks(clinicID, branchID)...)
			write(t, keto, tenants.Grant{IdentityID: member, Role: builtIn.Role, BranchID: branchID}.Relationship(clinicID))
			for _, permission := range branchPermissions {
				allowed, err := keto.Check(ctx, identity.BranchNamespace, branchID.String(), permission, member)
				if err != nil {
					t.Fatalf("check %s: %v", permission, err)
				}
				if want := slices.Contains(builtIn.BranchPermissions, permission); allowed != want {
					t.Errorf("%s at the branch: Keto allows %v, table says %v", permission, allowed, want)
				}
			}
			for _, permission := range clinicPermissions {
				allowed, err := keto.Check(ctx, identity.ClinicNamespace, clinicID.String(), permission, member)
				if err != nil {
					t.Fatalf("check %s: %v", permission, err)
				}
				if allowed {
					t.Errorf("%s on the clinic: allowed for a role held at one branch, want denied", permission)
				}
			}
			isMember, err := keto.Check(ctx, identity.ClinicNamespace, clinicID.String(), "view", member)
			if err != nil || !isMember {
				t.Errorf("view on the clinic = %v, %v; want true: a branch member is a clinic member", isMember, err)
			}
		})
	}
}

// TestGrantablePermissionsMatchKeto gives a custom role each grantable
// permission alone and checks that Keto grants exactly that permission.
func TestGrantablePermissionsMatchKeto(t *testing.T) {
	keto := permissions(t)
	ctx := context.Background()
	for _, granted := range role.GrantablePermissions {
		clinicID, roleID, member := uuid.New(), uuid.New(), uuid.New()
		write(t, keto,
			tenants.CustomRolePermission(clinicID, roleID, granted),
			tenants.Grant{IdentityID: member, CustomRoleID: roleID}.Relationship(clinicID))
		for _, permission := range append([]string{"view"}, clinicPermissions...) {
			allowed, err := keto.Check(ctx, identity.ClinicNamespace, clinicID.String(), permission, member)
			if err != nil {
				t.Fatalf("check %s: %v", permission, err)
			}
			if want := permission == granted || permission == "view"; allowed != want {
				t.Errorf("role granting %s: %s allowed %v, want %v", granted, permission, allowed, want)
			}
		}
	}
}
