// Package role manages who holds which role in a clinic: the built-in roles,
// granted for the whole clinic or at one branch, and the custom roles a
// clinic defines from a fixed set of permissions. Every change is a row in
// memberships or clinic_roles, audited in the same transaction, and reaches
// Keto through the tenants outbox.
package role

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/tenants"
)

// Errors the API layer maps to status codes.
var (
	ErrRoleNotFound   = errors.New("custom role not found in this clinic")
	ErrMemberNotFound = errors.New("member not found in this clinic: only active members can be given roles, so invite new people first")
	ErrGrantNotFound  = errors.New("the member does not hold this role here")
	ErrAlreadyGranted = errors.New("the member already has this role here")
	ErrOwnersOnly     = errors.New("only an owner may grant or revoke the owner role")
	ErrLastOwner      = errors.New("the last owner of a clinic cannot lose the owner role: make someone else owner first")
	ErrOnlyRole       = errors.New("this is the member's only role in the clinic: grant another role first, or remove them from the clinic")
	ErrNameTaken      = errors.New("a custom role with this name already exists in this clinic")
)

// InvalidError names the field of a request that fails validation.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid role request: %s: %s", e.Field, e.Message)
}

// GrantablePermissions are the permissions a custom role may grant, in the
// order the OPL declares their grants_<permission> relations on Clinic
// (infra/keto/namespaces.keto.ts). Managing staff, roles and the
// subscription stays with the built-in owner and manager roles.
var GrantablePermissions = []string{
	"view_appointments", "book_appointments", "view_contacts", "edit_contacts",
	"view_pets", "create_pets", "edit_pets", "view_records", "add_vitals",
	"write_records", "view_invoices", "create_invoices", "edit_invoices",
	"view_reports", "view_staff", "view_audit",
}

// BuiltIn describes a built-in role as the OPL defines it.
type BuiltIn struct {
	Role identity.Role
	// Permissions are those the role holds on the clinic when granted for
	// the whole clinic.
	Permissions []string
	// BranchPermissions are those it holds on one branch when granted
	// there. They are nil for owner, which is granted for the whole clinic
	// only.
	BranchPermissions []string
}

// BuiltIns lists the built-in roles with their permissions. A test checks
// this table against Keto, so it cannot drift from the OPL unnoticed.
var BuiltIns = []BuiltIn{
	{
		Role: identity.RoleOwner,
		Permissions: []string{"view_appointments", "book_appointments", "view_contacts", "edit_contacts",
			"view_pets", "create_pets", "edit_pets", "view_records", "view_invoices", "create_invoices",
			"edit_invoices", "view_reports", "view_staff", "view_audit", "manage_staff", "manage_roles",
			"view_subscription", "edit_subscription"},
	},
	{
		Role: identity.RoleManager,
		Permissions: []string{"view_appointments", "book_appointments", "view_contacts", "edit_contacts",
			"view_pets", "create_pets", "edit_pets", "view_records", "view_invoices", "create_invoices",
			"edit_invoices", "view_reports", "view_staff", "view_audit", "manage_staff", "manage_roles",
			"view_subscription"},
		BranchPermissions: []string{"view_appointments", "book_appointments"},
	},
	{
		Role: identity.RoleVeterinarian,
		Permissions: []string{"view_appointments", "book_appointments", "view_contacts", "view_pets",
			"create_pets", "edit_pets", "view_records", "add_vitals", "write_records", "create_invoices"},
		BranchPermissions: []string{"view_appointments", "book_appointments"},
	},
	{
		Role: identity.RoleNurse,
		Permissions: []string{"view_appointments", "view_contacts", "view_pets", "create_pets", "edit_pets",
			"view_records", "add_vitals"},
		BranchPermissions: []string{"view_appointments"},
	},
	{
		Role: identity.RoleReceptionist,
		Permissions: []string{"view_appointments", "book_appointments", "view_contacts", "edit_contacts",
			"view_pets", "create_pets"},
		BranchPermissions: []string{"view_appointments", "book_appointments"},
	},
}

// Custom is a role a clinic defined.
type Custom struct {
	ID          uuid.UUID
	Name        string
	Permissions []string
	// Members counts the active members holding the role.
	Members   int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Catalog is every role of a clinic.
type Catalog struct {
	BuiltIn []BuiltIn
	Custom  []Custom
}

// Member is a person in a clinic with the roles they hold.
type Member struct {
	IdentityID uuid.UUID
	Email      string
	// Active is false for a deactivated member, who holds no role.
	Active      bool
	ClinicRoles []identity.Role
	BranchRoles []BranchRole
	CustomRoles []CustomRef
}

// BranchRole is a built-in role held at one branch.
type BranchRole struct {
	BranchID   uuid.UUID
	BranchName string
	Role       identity.Role
}

// CustomRef names a custom role a member holds.
type CustomRef struct {
	ID   uuid.UUID
	Name string
}

// Assignment is a built-in role for the whole clinic or, with BranchID set,
// at one branch.
type Assignment struct {
	Role     string
	BranchID uuid.UUID
}

// Definition is the name and permissions of a new custom role.
type Definition struct {
	Name        string
	Permissions []string
}

// Edit is a change to a custom role. A nil field stays as it is.
type Edit struct {
	Name        *string
	Permissions []string
}

// Actor is the signed-in person making a change, with where they made it
// from, for the audit trail.
type Actor struct {
	IdentityID uuid.UUID
	IP         string
	UserAgent  string
}

// Service manages a clinic's roles.
type Service struct {
	db     *tenants.DB
	outbox *tenants.Outbox
	now    func() time.Time
}

// NewService returns the role service. Changes reach Keto through outbox.
func NewService(db *tenants.DB, outbox *tenants.Outbox, now func() time.Time) *Service {
	return &Service{db: db, outbox: outbox, now: now}
}

func (s *Service) event(action identity.Action, actor Actor, clinicID, target uuid.UUID, detail map[string]string) identity.Event {
	return identity.Event{
		Action:    action,
		ActorID:   actor.IdentityID,
		TargetID:  target,
		ClinicID:  clinicID,
		IP:        actor.IP,
		UserAgent: actor.UserAgent,
		Detail:    detail,
		At:        s.now(),
	}
}

func (a Assignment) validate() (tenants.Grant, error) {
	role, err := identity.ParseRole(a.Role)
	if err != nil {
		return tenants.Grant{}, &InvalidError{Field: "role", Message: err.Error()}
	}
	if role == identity.RoleOwner && a.BranchID != uuid.Nil {
		return tenants.Grant{}, &InvalidError{Field: "branch_id", Message: "an owner is granted for the whole clinic: omit branch_id"}
	}
	return tenants.Grant{Role: role, BranchID: a.BranchID}, nil
}

const maxNameLength = 80

// normaliseName trims name and checks it is a printable label.
func normaliseName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", &InvalidError{Field: "name", Message: "must not be blank"}
	case len([]rune(name)) > maxNameLength:
		return "", &InvalidError{Field: "name", Message: fmt.Sprintf("must be at most %d characters", maxNameLength)}
	case strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }):
		return "", &InvalidError{Field: "name", Message: "must contain printable characters only"}
	}
	return name, nil
}

// normalisePermissions checks that permissions is a non-empty set of
// grantable permissions and returns it without duplicates, in the order of
// GrantablePermissions.
func normalisePermissions(permissions []string) ([]string, error) {
	if len(permissions) == 0 {
		return nil, &InvalidError{Field: "permissions", Message: "must name at least one permission"}
	}
	for _, p := range permissions {
		if !slices.Contains(GrantablePermissions, p) {
			return nil, &InvalidError{Field: "permissions", Message: fmt.Sprintf("%q cannot be granted by a custom role: use %s",
				p, strings.Join(GrantablePermissions, ", "))}
		}
	}
	var out []string
	for _, p := range GrantablePermissions {
		if slices.Contains(permissions, p) {
			out = append(out, p)
		}
	}
	return out, nil
}
