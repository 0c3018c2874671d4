package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/services/role"
)

// RoleService manages built-in and custom roles in a clinic.
type RoleService interface {
	Catalog(ctx context.Context, clinicID uuid.UUID) (role.Catalog, error)
	Members(ctx context.Context, clinicID uuid.UUID) ([]role.Member, error)
	Grant(ctx context.Context, clinicID uuid.UUID, actor role.Actor, target uuid.UUID, in role.Assignment) error
	Revoke(ctx context.Context, clinicID uuid.UUID, actor role.Actor, target uuid.UUID, in role.Assignment) error
	Create(ctx context.Context, clinicID uuid.UUID, actor role.Actor, in role.Definition) (role.Custom, error)
	Update(ctx context.Context, clinicID uuid.UUID, actor role.Actor, roleID uuid.UUID, in role.Edit) (role.Custom, error)
	Delete(ctx context.Context, clinicID uuid.UUID, actor role.Actor, roleID uuid.UUID) error
	AddMember(ctx context.Context, clinicID uuid.UUID, actor role.Actor, roleID, target uuid.UUID) error
	RemoveMember(ctx context.Context, clinicID uuid.UUID, actor role.Actor, roleID, target uuid.UUID) error
}

// permissionManageRoles is the Keto permission on a clinic that role
// changes need; listing roles needs view_staff.
const permissionManageRoles = "manage_roles"

type builtInRoleJSON struct {
	Role              string   `json:"role" enum:"owner,manager,veterinarian,nurse,receptionist"`
	Permissions       []string `json:"permissions" doc:"Permissions on the clinic when granted for the whole clinic"`
	BranchPermissions []string `json:"branch_permissions" doc:"Permissions on the branch when granted at one branch; empty for owner, which is clinic-wide only"`
}

type customRoleJSON struct {
	ID          string    `json:"id" format:"uuid"`
	Name        string    `json:"name"`
	Permissions []string  `json:"permissions"`
	Members     int       `json:"members" doc:"Active members holding the role"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func customRoleFrom(c role.Custom) customRoleJSON {
	return customRoleJSON{ID: c.ID.String(), Name: c.Name, Permissions: c.Permissions, Members: c.Members,
		CreatedAt: c.CreatedAt.In(clinicTime), UpdatedAt: c.UpdatedAt.In(clinicTime)}
}

type roleCatalogOutput struct {
	Body struct {
		BuiltIn              []builtInRoleJSON `json:"built_in"`
		Custom               []customRoleJSON  `json:"custom"`
		GrantablePermissions []string          `json:"grantable_permissions" doc:"Permissions a custom role may grant"`
	}
}

type branchRoleJSON struct {
	BranchID   string `json:"branch_id" format:"uuid"`
	BranchName string `json:"branch_name"`
	Role       string `json:"role"`
}

type customRefJSON struct {
	ID   string `json:"id" format:"uuid"`
	Name string `json:"name"`
}

type memberRolesJSON struct {
	IdentityID  string           `json:"identity_id" format:"uuid"`
	Email       string           `json:"email"`
	Active      bool             `json:"active" doc:"False for a deactivated member, who holds no role"`
	ClinicRoles []string         `json:"clinic_roles" doc:"Built-in roles held for the whole clinic"`
	BranchRoles []branchRoleJSON `json:"branch_roles" doc:"Built-in roles held at one branch"`
	CustomRoles []customRefJSON  `json:"custom_roles"`
}

type membersOutput struct {
	Body struct {
		Members []memberRolesJSON `json:"members"`
	}
}

type grantRoleInput struct {
	ClinicID   string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	IdentityID string `path:"identityID" format:"uuid" doc:"Member's identity id"`
	UserAgent  string `header:"User-Agent"`
	Body       struct {
		Role     string `json:"role" enum:"owner,manager,veterinarian,nurse,receptionist" doc:"Built-in role; only an owner may grant owner"`
		BranchID string `json:"branch_id,omitempty" format:"uuid" doc:"Grant the role at this branch only; omit for the whole clinic (always for owner)"`
	}
}

type revokeRoleInput struct {
	ClinicID   string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	IdentityID string `path:"identityID" format:"uuid" doc:"Member's identity id"`
	Role       string `path:"role" enum:"owner,manager,veterinarian,nurse,receptionist" doc:"Built-in role to revoke"`
	BranchID   string `query:"branch_id" format:"uuid" doc:"Revoke the role held at this branch; omit for the clinic-wide role"`
	UserAgent  string `header:"User-Agent"`
}

type createRoleInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	UserAgent string `header:"User-Agent"`
	Body      struct {
		Name        string   `json:"name" minLength:"1" maxLength:"80" doc:"Unique in the clinic, compared case-insensitively" example:"Front desk with billing"`
		Permissions []string `json:"permissions" minItems:"1" maxItems:"16" enum:"view_appointments,book_appointments,view_contacts,edit_contacts,view_pets,create_pets,edit_pets,view_records,add_vitals,write_records,view_invoices,create_invoices,edit_invoices,view_reports,view_staff,view_audit" doc:"Permissions the role grants"`
	}
}

type updateRoleInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	RoleID    string `path:"roleID" format:"uuid" doc:"Custom role id"`
	UserAgent string `header:"User-Agent"`
	Body      struct {
		Name        *string  `json:"name,omitempty" minLength:"1" maxLength:"80" doc:"New name; omit to keep it"`
		Permissions []string `json:"permissions,omitempty" minItems:"1" maxItems:"16" enum:"view_appointments,book_appointments,view_contacts,edit_contacts,view_pets,create_pets,edit_pets,view_records,add_vitals,write_records,view_invoices,create_invoices,edit_invoices,view_reports,view_staff,view_audit" doc:"The complete new set of permissions; omit to keep them"`
	}
}

type customRoleOutput struct {
	Location string `header:"Location"`
	Body     customRoleJSON
}

type customRoleInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	RoleID    string `path:"roleID" format:"uuid" doc:"Custom role id"`
	UserAgent string `header:"User-Agent"`
}

type addRoleMemberInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	RoleID    string `path:"roleID" format:"uuid" doc:"Custom role id"`
	UserAgent string `header:"User-Agent"`
	Body      struct {
		IdentityID string `json:"identity_id" format:"uuid" doc:"Identity id of an active member of the clinic"`
	}
}

type roleMemberInput struct {
	ClinicID   string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	RoleID     string `path:"roleID" format:"uuid" doc:"Custom role id"`
	IdentityID string `path:"identityID" format:"uuid" doc:"Member's identity id"`
	UserAgent  string `header:"User-Agent"`
}

func registerRoles(api huma.API, h *handlers) {
	changeRoles := Access{Audience: AudienceStaff, Permission: permissionManageRoles, Recent: true}

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-roles",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/roles",
		Summary:     "List the built-in and custom roles of the clinic with their permissions",
		Tags:        []string{"Roles"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewStaff}), h.listRoles)

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-members",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/members",
		Summary:     "List the clinic's members with their roles, clinic-wide, per branch and custom",
		Tags:        []string{"Roles"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewStaff}), h.listMembers)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "grant-role",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/members/{identityID}/roles",
		Summary:       "Grant a built-in role to a member, for the whole clinic or at one branch",
		Description:   "Only existing members can be given roles; invite new people. Only an owner may grant owner. Needs a recent sign-in.",
		Tags:          []string{"Roles"},
		DefaultStatus: http.StatusNoContent,
		MaxBodyBytes:  4 << 10,
	}, changeRoles), h.grantRole)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "revoke-role",
		Method:        http.MethodDelete,
		Path:          "/v1/clinics/{clinicID}/members/{identityID}/roles/{role}",
		Summary:       "Revoke a built-in role from a member",
		Description:   "Takes effect on the member's next request. Only an owner may revoke owner, and never from the last owner. A member's only role cannot be revoked: remove them from the clinic instead. Needs a recent sign-in.",
		Tags:          []string{"Roles"},
		DefaultStatus: http.StatusNoContent,
	}, changeRoles), h.revokeRole)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "create-custom-role",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/roles",
		Summary:       "Define a custom role from grantable permissions",
		Description:   "Needs a recent sign-in.",
		Tags:          []string{"Roles"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  4 << 10,
	}, changeRoles), h.createRole)

	huma.Register(api, declare(huma.Operation{
		OperationID:  "update-custom-role",
		Method:       http.MethodPatch,
		Path:         "/v1/clinics/{clinicID}/roles/{roleID}",
		Summary:      "Rename a custom role or replace its permissions",
		Description:  "Permissions removed stop working on the holders' next request. Needs a recent sign-in.",
		Tags:         []string{"Roles"},
		MaxBodyBytes: 4 << 10,
	}, changeRoles), h.updateRole)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "delete-custom-role",
		Method:        http.MethodDelete,
		Path:          "/v1/clinics/{clinicID}/roles/{roleID}",
		Summary:       "Delete a custom role; its members lose it",
		Description:   "Refused while the role is some member's only role. Needs a recent sign-in.",
		Tags:          []string{"Roles"},
		DefaultStatus: http.StatusNoContent,
	}, changeRoles), h.deleteRole)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "add-custom-role-member",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/roles/{roleID}/members",
		Summary:       "Grant a custom role to a member",
		Description:   "Only existing members can be given roles; invite new people. Needs a recent sign-in.",
		Tags:          []string{"Roles"},
		DefaultStatus: http.StatusNoContent,
		MaxBodyBytes:  4 << 10,
	}, changeRoles), h.addRoleMember)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "remove-custom-role-member",
		Method:        http.MethodDelete,
		Path:          "/v1/clinics/{clinicID}/roles/{roleID}/members/{identityID}",
		Summary:       "Revoke a custom role from a member",
		Description:   "Takes effect on the member's next request. Needs a recent sign-in.",
		Tags:          []string{"Roles"},
		DefaultStatus: http.StatusNoContent,
	}, changeRoles), h.removeRoleMember)
}

// roleErrors maps the role service's errors to statuses. The client sees
// the error's own message, without the context the service wrapped it in.
var roleErrors = []struct {
	err    error
	status int
}{
	{role.ErrRoleNotFound, http.StatusNotFound},
	{role.ErrMemberNotFound, http.StatusNotFound},
	{role.ErrGrantNotFound, http.StatusNotFound},
	{role.ErrOwnersOnly, http.StatusForbidden},
	{role.ErrAlreadyGranted, http.StatusConflict},
	{role.ErrLastOwner, http.StatusConflict},
	{role.ErrOnlyRole, http.StatusConflict},
	{role.ErrNameTaken, http.StatusConflict},
}

// roleStatus returns the status of a role service error, or 0.
func roleStatus(err error) int {
	for _, e := range roleErrors {
		if errors.Is(err, e.err) {
			return e.status
		}
	}
	return 0
}

// roleMessage returns the message of the role service error in err.
func roleMessage(err error) string {
	for _, e := range roleErrors {
		if errors.Is(err, e.err) {
			return e.err.Error()
		}
	}
	return err.Error()
}

func roleActorOf(ctx context.Context, userAgent string) role.Actor {
	return role.Actor{IdentityID: sessionFrom(ctx).IdentityID, IP: ClientIPFrom(ctx), UserAgent: userAgent}
}

// optionalID parses an id that Huma has already validated as a UUID, or
// returns uuid.Nil for an empty one.
func optionalID(s string) uuid.UUID {
	if s == "" {
		return uuid.Nil
	}
	return uuid.MustParse(s)
}

func (h *handlers) listRoles(ctx context.Context, in *clinicPathInput) (*roleCatalogOutput, error) {
	catalog, err := h.deps.Roles.Catalog(ctx, uuid.MustParse(in.ClinicID))
	if err != nil {
		return nil, h.problem(ctx, "list-roles", err)
	}
	out := &roleCatalogOutput{}
	for _, b := range catalog.BuiltIn {
		item := builtInRoleJSON{Role: string(b.Role), Permissions: b.Permissions, BranchPermissions: b.BranchPermissions}
		if item.BranchPermissions == nil {
			item.BranchPermissions = []string{}
		}
		out.Body.BuiltIn = append(out.Body.BuiltIn, item)
	}
	out.Body.Custom = make([]customRoleJSON, 0, len(catalog.Custom))
	for _, c := range catalog.Custom {
		out.Body.Custom = append(out.Body.Custom, customRoleFrom(c))
	}
	out.Body.GrantablePermissions = role.GrantablePermissions
	return out, nil
}

func (h *handlers) listMembers(ctx context.Context, in *clinicPathInput) (*membersOutput, error) {
	members, err := h.deps.Roles.Members(ctx, uuid.MustParse(in.ClinicID))
	if err != nil {
		return nil, h.problem(ctx, "list-members", err)
	}
	out := &membersOutput{}
	out.Body.Members = make([]memberRolesJSON, 0, len(members))
	for _, m := range members {
		item := memberRolesJSON{IdentityID: m.IdentityID.String(), Email: m.Email, Active: m.Active,
			ClinicRoles: []string{}, BranchRoles: []branchRoleJSON{}, CustomRoles: []customRefJSON{}}
		for _, r := range m.ClinicRoles {
			item.ClinicRoles = append(item.ClinicRoles, string(r))
		}
		for _, b := range m.BranchRoles {
			item.BranchRoles = append(item.BranchRoles, branchRoleJSON{BranchID: b.BranchID.String(), BranchName: b.BranchName, Role: string(b.Role)})
		}
		for _, c := range m.CustomRoles {
			item.CustomRoles = append(item.CustomRoles, customRefJSON{ID: c.ID.String(), Name: c.Name})
		}
		out.Body.Members = append(out.Body.Members, item)
	}
	return out, nil
}

func (h *handlers) grantRole(ctx context.Context, in *grantRoleInput) (*struct{}, error) {
	err := h.deps.Roles.Grant(ctx, uuid.MustParse(in.ClinicID), roleActorOf(ctx, in.UserAgent), uuid.MustParse(in.IdentityID),
		role.Assignment{Role: in.Body.Role, BranchID: optionalID(in.Body.BranchID)})
	if err != nil {
		return nil, h.problem(ctx, "grant-role", err)
	}
	return nil, nil
}

func (h *handlers) revokeRole(ctx context.Context, in *revokeRoleInput) (*struct{}, error) {
	err := h.deps.Roles.Revoke(ctx, uuid.MustParse(in.ClinicID), roleActorOf(ctx, in.UserAgent), uuid.MustParse(in.IdentityID),
		role.Assignment{Role: in.Role, BranchID: optionalID(in.BranchID)})
	if err != nil {
		return nil, h.problem(ctx, "revoke-role", err)
	}
	return nil, nil
}

func (h *handlers) createRole(ctx context.Context, in *createRoleInput) (*customRoleOutput, error) {
	clinicID := uuid.MustParse(in.ClinicID)
	created, err := h.deps.Roles.Create(ctx, clinicID, roleActorOf(ctx, in.UserAgent),
		role.Definition{Name: in.Body.Name, Permissions: in.Body.Permissions})
	if err != nil {
		return nil, h.problem(ctx, "create-custom-role", err)
	}
	return &customRoleOutput{
		Location: "/v1/clinics/" + clinicID.String() + "/roles/" + created.ID.String(),
		Body:     customRoleFrom(created),
	}, nil
}

func (h *handlers) updateRole(ctx context.Context, in *updateRoleInput) (*customRoleOutput, error) {
	updated, err := h.deps.Roles.Update(ctx, uuid.MustParse(in.ClinicID), roleActorOf(ctx, in.UserAgent), uuid.MustParse(in.RoleID),
		role.Edit{Name: in.Body.Name, Permissions: in.Body.Permissions})
	if err != nil {
		return nil, h.problem(ctx, "update-custom-role", err)
	}
	return &customRoleOutput{Body: customRoleFrom(updated)}, nil
}

func (h *handlers) deleteRole(ctx context.Context, in *customRoleInput) (*struct{}, error) {
	if err := h.deps.Roles.Delete(ctx, uuid.MustParse(in.ClinicID), roleActorOf(ctx, in.UserAgent), uuid.MustParse(in.RoleID)); err != nil {
		return nil, h.problem(ctx, "delete-custom-role", err)
	}
	return nil, nil
}

func (h *handlers) addRoleMember(ctx context.Context, in *addRoleMemberInput) (*struct{}, error) {
	err := h.deps.Roles.AddMember(ctx, uuid.MustParse(in.ClinicID), roleActorOf(ctx, in.UserAgent),
		uuid.MustParse(in.RoleID), uuid.MustParse(in.Body.IdentityID))
	if err != nil {
		return nil, h.problem(ctx, "add-custom-role-member", err)
	}
	return nil, nil
}

func (h *handlers) removeRoleMember(ctx context.Context, in *roleMemberInput) (*struct{}, error) {
	err := h.deps.Roles.RemoveMember(ctx, uuid.MustParse(in.ClinicID), roleActorOf(ctx, in.UserAgent),
		uuid.MustParse(in.RoleID), uuid.MustParse(in.IdentityID))
	if err != nil {
		return nil, h.problem(ctx, "remove-custom-role-member", err)
	}
	return nil, nil
}
