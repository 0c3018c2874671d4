package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/staff"
)

// StaffService manages clinic staff and each person's own sessions.
type StaffService interface {
	Invite(ctx context.Context, clinicID uuid.UUID, actor staff.Actor, in staff.Invite) (staff.Invitation, error)
	List(ctx context.Context, clinicID uuid.UUID) ([]staff.Member, error)
	Deactivate(ctx context.Context, clinicID uuid.UUID, actor staff.Actor, target uuid.UUID) error
	Remove(ctx context.Context, clinicID uuid.UUID, actor staff.Actor, target uuid.UUID) error
	Sessions(ctx context.Context, actor staff.Actor) ([]identity.SessionInfo, error)
	RevokeSession(ctx context.Context, actor staff.Actor, sessionID string) error
}

// The Keto permissions on a clinic that staff operations need.
const (
	permissionViewStaff   = "view_staff"
	permissionManageStaff = "manage_staff"
)

type inviteInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	UserAgent string `header:"User-Agent"`
	Body      struct {
		Email    string `json:"email" format:"email" maxLength:"320" doc:"Where the invitation goes; compared case-insensitively" example:"new.vet@example.com"`
		Role     string `json:"role" enum:"owner,manager,veterinarian,nurse,receptionist" doc:"Role to grant; only an owner may grant owner"`
		BranchID string `json:"branch_id,omitempty" format:"uuid" doc:"Branch the person works at; omit for the whole clinic"`
	}
}

type invitationOutput struct {
	Body struct {
		ID         string    `json:"id" format:"uuid"`
		IdentityID string    `json:"identity_id" format:"uuid"`
		Email      string    `json:"email"`
		Role       string    `json:"role"`
		BranchID   string    `json:"branch_id,omitempty" format:"uuid"`
		NewAccount bool      `json:"new_account" doc:"True when a one-time code was emailed to set a password; false when an existing login gained the role"`
		ExpiresAt  time.Time `json:"expires_at" doc:"When the emailed code stops working"`
	}
}

type memberJSON struct {
	IdentityID string    `json:"identity_id" format:"uuid"`
	Email      string    `json:"email"`
	Roles      []string  `json:"roles"`
	Active     bool      `json:"active"`
	Since      time.Time `json:"since"`
}

type staffListOutput struct {
	Body struct {
		Members []memberJSON `json:"members"`
	}
}

type memberInput struct {
	ClinicID   string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	IdentityID string `path:"identityID" format:"uuid" doc:"Staff member's identity id"`
	UserAgent  string `header:"User-Agent"`
}

type sessionJSON struct {
	ID              string       `json:"id" format:"uuid"`
	Current         bool         `json:"current"`
	AAL             string       `json:"aal"`
	AuthenticatedAt time.Time    `json:"authenticated_at"`
	ExpiresAt       time.Time    `json:"expires_at"`
	Devices         []deviceJSON `json:"devices"`
}

type deviceJSON struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
}

type sessionsOutput struct {
	Body struct {
		Sessions []sessionJSON `json:"sessions"`
	}
}

type sessionInput struct {
	SessionID string `path:"sessionID" format:"uuid" doc:"Session id, from the session list"`
	UserAgent string `header:"User-Agent"`
}

type userAgentInput struct {
	UserAgent string `header:"User-Agent"`
}

func registerStaff(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID:   "invite-staff",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/invitations",
		Summary:       "Invite a person to the clinic with a role",
		Description:   "Emails a one-time code to a new person, or gives an existing login (a locum) the role. Needs a recent sign-in.",
		Tags:          []string{"Staff"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  4 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionManageStaff, Recent: true}), h.inviteStaff)

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-staff",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/staff",
		Summary:     "List the clinic's staff and their roles",
		Tags:        []string{"Staff"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewStaff}), h.listStaff)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "deactivate-staff",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/staff/{identityID}/deactivate",
		Summary:       "Deactivate a staff member in this clinic",
		Description:   "Ends their access to the clinic at once. A person left without any clinic is signed out everywhere and their login deactivated.",
		Tags:          []string{"Staff"},
		DefaultStatus: http.StatusNoContent,
	}, Access{Audience: AudienceStaff, Permission: permissionManageStaff, Recent: true}), h.deactivateStaff)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "remove-staff",
		Method:        http.MethodDelete,
		Path:          "/v1/clinics/{clinicID}/staff/{identityID}",
		Summary:       "Remove a staff member from this clinic",
		Tags:          []string{"Staff"},
		DefaultStatus: http.StatusNoContent,
	}, Access{Audience: AudienceStaff, Permission: permissionManageStaff, Recent: true}), h.removeStaff)

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-my-sessions",
		Method:      http.MethodGet,
		Path:        "/v1/me/sessions",
		Summary:     "List your active sessions",
		Tags:        []string{"Identity"},
	}, Access{Audience: AudienceAnyone}), h.listMySessions)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "revoke-my-session",
		Method:        http.MethodDelete,
		Path:          "/v1/me/sessions/{sessionID}",
		Summary:       "Sign out one of your sessions",
		Tags:          []string{"Identity"},
		DefaultStatus: http.StatusNoContent,
	}, Access{Audience: AudienceAnyone}), h.revokeMySession)
}

func actorOf(ctx context.Context, userAgent string) staff.Actor {
	session := sessionFrom(ctx)
	return staff.Actor{IdentityID: session.IdentityID, SessionID: session.ID, IP: ClientIPFrom(ctx), UserAgent: userAgent}
}

func (h *handlers) inviteStaff(ctx context.Context, in *inviteInput) (*invitationOutput, error) {
	invite := staff.Invite{Email: in.Body.Email, Role: in.Body.Role}
	if in.Body.BranchID != "" {
		invite.BranchID = uuid.MustParse(in.Body.BranchID)
	}
	sent, err := h.deps.Staff.Invite(ctx, uuid.MustParse(in.ClinicID), actorOf(ctx, in.UserAgent), invite)
	if err != nil {
		return nil, h.problem(ctx, "invite-staff", err)
	}
	out := &invitationOutput{}
	out.Body.ID = sent.ID.String()
	out.Body.IdentityID = sent.IdentityID.String()
	out.Body.Email = sent.Email
	out.Body.Role = string(sent.Role)
	if sent.BranchID != uuid.Nil {
		out.Body.BranchID = sent.BranchID.String()
	}
	out.Body.NewAccount = sent.NewAccount
	out.Body.ExpiresAt = sent.ExpiresAt.In(clinicTime)
	return out, nil
}

func (h *handlers) listStaff(ctx context.Context, in *clinicPathInput) (*staffListOutput, error) {
	members, err := h.deps.Staff.List(ctx, uuid.MustParse(in.ClinicID))
	if err != nil {
		return nil, h.problem(ctx, "list-staff", err)
	}
	out := &staffListOutput{}
	out.Body.Members = make([]memberJSON, 0, len(members))
	for _, m := range members {
		roles := make([]string, 0, len(m.Roles))
		for _, role := range m.Roles {
			roles = append(roles, string(role))
		}
		out.Body.Members = append(out.Body.Members, memberJSON{
			IdentityID: m.IdentityID.String(), Email: m.Email, Roles: roles, Active: m.Active, Since: m.Since.In(clinicTime),
		})
	}
	return out, nil
}

func (h *handlers) deactivateStaff(ctx context.Context, in *memberInput) (*struct{}, error) {
	err := h.deps.Staff.Deactivate(ctx, uuid.MustParse(in.ClinicID), actorOf(ctx, in.UserAgent), uuid.MustParse(in.IdentityID))
	if err != nil {
		return nil, h.problem(ctx, "deactivate-staff", err)
	}
	return nil, nil
}

func (h *handlers) removeStaff(ctx context.Context, in *memberInput) (*struct{}, error) {
	err := h.deps.Staff.Remove(ctx, uuid.MustParse(in.ClinicID), actorOf(ctx, in.UserAgent), uuid.MustParse(in.IdentityID))
	if err != nil {
		return nil, h.problem(ctx, "remove-staff", err)
	}
	return nil, nil
}

func (h *handlers) listMySessions(ctx context.Context, in *userAgentInput) (*sessionsOutput, error) {
	actor := actorOf(ctx, in.UserAgent)
	sessions, err := h.deps.Staff.Sessions(ctx, actor)
	if err != nil {
		return nil, h.problem(ctx, "list-my-sessions", err)
	}
	out := &sessionsOutput{}
	out.Body.Sessions = make([]sessionJSON, 0, len(sessions))
	for _, s := range sessions {
		item := sessionJSON{ID: s.ID, Current: s.ID == actor.SessionID, AAL: s.AAL,
			AuthenticatedAt: s.AuthenticatedAt.In(clinicTime), ExpiresAt: s.ExpiresAt.In(clinicTime), Devices: []deviceJSON{}}
		for _, d := range s.Devices {
			item.Devices = append(item.Devices, deviceJSON{IP: d.IP, UserAgent: d.UserAgent})
		}
		out.Body.Sessions = append(out.Body.Sessions, item)
	}
	return out, nil
}

func (h *handlers) revokeMySession(ctx context.Context, in *sessionInput) (*struct{}, error) {
	if err := h.deps.Staff.RevokeSession(ctx, actorOf(ctx, in.UserAgent), in.SessionID); err != nil {
		return nil, h.problem(ctx, "revoke-my-session", err)
	}
	return nil, nil
}
