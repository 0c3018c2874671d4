package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/identity"
)

type meOutput struct {
	Body struct {
		IdentityID string             `json:"identity_id" format:"uuid"`
		Email      string             `json:"email"`
		AAL        string             `json:"aal" doc:"Authenticator assurance level of this session; always aal2 here"`
		Operator   bool               `json:"operator" doc:"True for a platform operator, who is never a clinic member"`
		Clinics    []clinicMembership `json:"clinics" doc:"Clinics and roles of a staff member; a role at one branch reads role@branch-id, a custom role custom:role-id"`
	}
}

type clinicMembership struct {
	ClinicID string   `json:"clinic_id" format:"uuid"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
}

func registerMe(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID: "get-me",
		Method:      http.MethodGet,
		Path:        "/v1/me",
		Summary:     "Show the signed-in staff member",
		Tags:        []string{"Identity"},
	}, Access{Audience: AudienceAnyone}), h.getMe)
}

func (h *handlers) getMe(ctx context.Context, _ *struct{}) (*meOutput, error) {
	session := sessionFrom(ctx)
	out := &meOutput{}
	out.Body.IdentityID = session.IdentityID.String()
	out.Body.Email = session.Email
	out.Body.AAL = session.AAL
	out.Body.Operator = session.Operator()
	out.Body.Clinics = []clinicMembership{}
	if session.Operator() {
		return out, nil
	}

	roles, err := h.deps.Permissions.ClinicRoles(ctx, session.IdentityID)
	if err != nil {
		return nil, h.problem(ctx, "get-me", err)
	}
	// index maps a clinic id to its entry in out.Body.Clinics, or -1 for a
	// relationship to a clinic without rows, which grants nothing.
	index := map[string]int{}
	for _, role := range roles {
		id := role.ClinicID.String()
		i, seen := index[id]
		if !seen {
			clinic, err := h.deps.Clinics.Get(ctx, role.ClinicID)
			if err != nil {
				h.log.WarnContext(ctx, "clinic role without a readable clinic", "clinic_id", id, "err", err)
				index[id] = -1
				continue
			}
			out.Body.Clinics = append(out.Body.Clinics, clinicMembership{ClinicID: id, Name: clinic.Name})
			i = len(out.Body.Clinics) - 1
			index[id] = i
		}
		if i >= 0 {
			out.Body.Clinics[i].Roles = append(out.Body.Clinics[i].Roles, roleLabel(role))
		}
	}
	return out, nil
}

// roleLabel names a role for /v1/me: "nurse", "nurse@<branch id>" for a role
// at one branch, or "custom:<role id>" for a custom role.
func roleLabel(role identity.ClinicRole) string {
	switch {
	case role.CustomRoleID != uuid.Nil:
		return "custom:" + role.CustomRoleID.String()
	case role.BranchID != uuid.Nil:
		return string(role.Role) + "@" + role.BranchID.String()
	default:
		return string(role.Role)
	}
}
