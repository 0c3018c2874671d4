package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/tenants"
)

// permissionViewClinic is the Keto permission held by every role in a clinic.
const permissionViewClinic = "view"

type clinicJSON struct {
	ID        string       `json:"id" format:"uuid"`
	Name      string       `json:"name"`
	CreatedAt time.Time    `json:"created_at"`
	Branches  []branchJSON `json:"branches"`
}

type branchJSON struct {
	ID   string `json:"id" format:"uuid"`
	Name string `json:"name"`
}

func clinicFrom(c tenants.Clinic) clinicJSON {
	out := clinicJSON{ID: c.ID.String(), Name: c.Name, CreatedAt: c.CreatedAt, Branches: []branchJSON{}}
	for _, b := range c.Branches {
		out.Branches = append(out.Branches, branchJSON{ID: b.ID.String(), Name: b.Name})
	}
	return out
}

type createClinicInput struct {
	Body struct {
		Name       string `json:"name" minLength:"1" maxLength:"120" doc:"The clinic's trading name" example:"Indiranagar Pet Clinic"`
		BranchName string `json:"branch_name" minLength:"1" maxLength:"120" doc:"Name of the first branch" example:"Indiranagar"`
	}
}

type clinicOutput struct {
	Location string `header:"Location"`
	Body     clinicJSON
}

type clinicPathInput struct {
	ClinicID string `path:"clinicID" format:"uuid" doc:"Clinic id"`
}

func registerClinics(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID:   "create-clinic",
		Method:        http.MethodPost,
		Path:          "/v1/clinics",
		Summary:       "Create a clinic with its first branch; the caller becomes its owner",
		Tags:          []string{"Clinics"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  4 << 10,
	}, Access{Audience: AudienceStaff}), h.createClinic)

	huma.Register(api, declare(huma.Operation{
		OperationID: "get-clinic",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}",
		Summary:     "Show a clinic and its branches",
		Tags:        []string{"Clinics"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewClinic}), h.getClinic)
}

func (h *handlers) createClinic(ctx context.Context, in *createClinicInput) (*clinicOutput, error) {
	session := sessionFrom(ctx)
	clinic, err := h.deps.Clinics.Create(ctx, session.IdentityID, tenants.NewClinic{
		Name:       in.Body.Name,
		BranchName: in.Body.BranchName,
		OwnerEmail: session.Email,
	})
	if err != nil {
		return nil, h.problem(ctx, "create-clinic", err)
	}
	return &clinicOutput{Location: "/v1/clinics/" + clinic.ID.String(), Body: clinicFrom(clinic)}, nil
}

func (h *handlers) getClinic(ctx context.Context, in *clinicPathInput) (*clinicOutput, error) {
	clinic, err := h.deps.Clinics.Get(ctx, uuid.MustParse(in.ClinicID))
	if err != nil {
		return nil, h.problem(ctx, "get-clinic", err)
	}
	return &clinicOutput{Body: clinicFrom(clinic)}, nil
}
