package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/services/pet"
)

// ReferralService shares a pet's records with staff of another clinic.
type ReferralService interface {
	Share(ctx context.Context, clinicID, petID uuid.UUID, actor pet.Actor, in pet.NewReferral) (pet.Referral, error)
	Revoke(ctx context.Context, clinicID, petID, referralID uuid.UUID, actor pet.Actor) error
	List(ctx context.Context, clinicID, petID uuid.UUID) ([]pet.Referral, error)
}

type referralJSON struct {
	ID        string     `json:"id" format:"uuid"`
	PetID     string     `json:"pet_id" format:"uuid"`
	VetID     string     `json:"identity_id" format:"uuid" doc:"The recipient's identity id"`
	VetEmail  string     `json:"email" doc:"The recipient's email"`
	GrantedBy string     `json:"granted_by" format:"uuid"`
	GrantedAt time.Time  `json:"granted_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	Status    string     `json:"status" enum:"active,expired,revoked"`
	EndedAt   *time.Time `json:"ended_at,omitempty" doc:"When access ended: the revocation, or the expiry"`
}

func (h *handlers) referralFrom(r pet.Referral) referralJSON {
	out := referralJSON{
		ID: r.ID.String(), PetID: r.PetID.String(), VetID: r.VetID.String(), VetEmail: r.VetEmail,
		GrantedBy: r.GrantedBy.String(), GrantedAt: r.GrantedAt.In(clinicTime), ExpiresAt: r.ExpiresAt.In(clinicTime),
		Status: string(r.Status(h.deps.Now())),
	}
	if !r.EndedAt.IsZero() {
		ended := r.EndedAt.In(clinicTime)
		out.EndedAt = &ended
	}
	return out
}

type shareRecordsInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	PetID     string `path:"petID" format:"uuid" doc:"Pet id"`
	UserAgent string `header:"User-Agent"`
	Body      struct {
		Email      string    `json:"email,omitempty" format:"email" maxLength:"320" doc:"The recipient's login email; give this or identity_id" example:"referral.vet@example.com"`
		IdentityID string    `json:"identity_id,omitempty" format:"uuid" doc:"The recipient's identity id; give this or email"`
		ExpiresAt  time.Time `json:"expires_at" doc:"When access ends, RFC 3339: in the future, at most 30 days ahead" example:"2026-12-14T18:00:00+05:30"`
	}
}

type referralOutput struct {
	Body referralJSON
}

type referralsOutput struct {
	Body struct {
		Referrals []referralJSON `json:"referrals" doc:"Newest first"`
	}
}

type referralPathInput struct {
	ClinicID   string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	PetID      string `path:"petID" format:"uuid" doc:"Pet id"`
	ReferralID string `path:"referralID" format:"uuid" doc:"Referral id"`
	UserAgent  string `header:"User-Agent"`
}

func registerReferrals(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID:   "share-records",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/pets/{petID}/referrals",
		Summary:       "Share a pet's clinical record with a vet of another clinic until an expiry",
		Description:   "The recipient reads this pet's records, and nothing else of the clinic, until expires_at or a revocation.",
		Tags:          []string{"Referrals"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  4 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionShareRecords, Object: ObjectPet}), h.shareRecords)

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-referrals",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/pets/{petID}/referrals",
		Summary:     "List a pet's referrals, active and ended",
		Tags:        []string{"Referrals"},
	}, Access{Audience: AudienceStaff, Permission: permissionShareRecords, Object: ObjectPet}), h.listReferrals)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "revoke-referral",
		Method:        http.MethodDelete,
		Path:          "/v1/clinics/{clinicID}/pets/{petID}/referrals/{referralID}",
		Summary:       "Revoke a referral at once",
		Tags:          []string{"Referrals"},
		DefaultStatus: http.StatusNoContent,
	}, Access{Audience: AudienceStaff, Permission: permissionShareRecords, Object: ObjectPet}), h.revokeReferral)
}

func (h *handlers) shareRecords(ctx context.Context, in *shareRecordsInput) (*referralOutput, error) {
	request := pet.NewReferral{Email: in.Body.Email, ExpiresAt: in.Body.ExpiresAt}
	if in.Body.IdentityID != "" {
		request.IdentityID = uuid.MustParse(in.Body.IdentityID)
	}
	shared, err := h.deps.Referrals.Share(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), actorOfPet(ctx, in.UserAgent), request)
	if err != nil {
		return nil, h.problem(ctx, "share-records", err)
	}
	return &referralOutput{Body: h.referralFrom(shared)}, nil
}

func (h *handlers) listReferrals(ctx context.Context, in *petPathInput) (*referralsOutput, error) {
	found, err := h.deps.Referrals.List(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID))
	if err != nil {
		return nil, h.problem(ctx, "list-referrals", err)
	}
	out := &referralsOutput{}
	out.Body.Referrals = make([]referralJSON, 0, len(found))
	for _, r := range found {
		out.Body.Referrals = append(out.Body.Referrals, h.referralFrom(r))
	}
	return out, nil
}

func (h *handlers) revokeReferral(ctx context.Context, in *referralPathInput) (*struct{}, error) {
	err := h.deps.Referrals.Revoke(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), uuid.MustParse(in.ReferralID), actorOfPet(ctx, in.UserAgent))
	if err != nil {
		return nil, h.problem(ctx, "revoke-referral", err)
	}
	return nil, nil
}
