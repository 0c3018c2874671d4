package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/services/pet"
)

// PetRegistry registers pet parents and pets and reads their profiles.
type PetRegistry interface {
	CreateParent(ctx context.Context, clinicID uuid.UUID, actor pet.Actor, in pet.NewParent) (pet.Parent, error)
	Create(ctx context.Context, clinicID uuid.UUID, actor pet.Actor, in pet.NewPet) (pet.Pet, error)
	Get(ctx context.Context, clinicID, petID uuid.UUID) (pet.Pet, error)
	List(ctx context.Context, clinicID uuid.UUID, q pet.Query) ([]pet.Pet, error)
	Update(ctx context.Context, clinicID, petID uuid.UUID, change pet.Change) (pet.Pet, error)
	Contact(ctx context.Context, clinicID, petID uuid.UUID, actor pet.Actor) (pet.Parent, error)
}

// The Keto permissions pet operations need: on the clinic for creating and
// listing, and on the pet (Pet namespace) for everything about one pet.
// Contact details are checked on the clinic, so a vet with a referral to
// one pet never reaches them.
const (
	permissionCreatePets   = "create_pets"
	permissionViewPets     = "view_pets"
	permissionViewContacts = "view_contacts"
	permissionEditContacts = "edit_contacts"
	permissionViewPet      = "view"
	permissionEditPet      = "edit"
	permissionViewRecords  = "view_records"
	permissionAddVitals    = "add_vitals"
	permissionWriteRecords = "write_records"
	permissionShareRecords = "share_records"
)

type parentJSON struct {
	ID        string    `json:"id" format:"uuid"`
	Name      string    `json:"name"`
	Phone     string    `json:"phone"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func parentFrom(p pet.Parent) parentJSON {
	return parentJSON{ID: p.ID.String(), Name: p.Name, Phone: p.Phone, Email: p.Email, CreatedAt: p.CreatedAt.In(clinicTime)}
}

type petJSON struct {
	ID          string    `json:"id" format:"uuid"`
	ClinicID    string    `json:"clinic_id" format:"uuid"`
	ParentID    string    `json:"pet_parent_id" format:"uuid"`
	Name        string    `json:"name"`
	Species     string    `json:"species"`
	Breed       string    `json:"breed"`
	Sex         string    `json:"sex" enum:"male,female,unknown"`
	DateOfBirth string    `json:"date_of_birth,omitempty" format:"date"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func petFrom(p pet.Pet) petJSON {
	out := petJSON{
		ID: p.ID.String(), ClinicID: p.ClinicID.String(), ParentID: p.ParentID.String(),
		Name: p.Name, Species: p.Species, Breed: p.Breed, Sex: string(p.Sex),
		CreatedAt: p.CreatedAt.In(clinicTime), UpdatedAt: p.UpdatedAt.In(clinicTime),
	}
	if !p.DateOfBirth.IsZero() {
		out.DateOfBirth = p.DateOfBirth.Format(time.DateOnly)
	}
	return out
}

// patientJSON is the pet as shown next to its clinical record: the profile
// without the link to its pet parent, because a referred vet receives it.
type patientJSON struct {
	ID          string `json:"id" format:"uuid"`
	Name        string `json:"name"`
	Species     string `json:"species"`
	Breed       string `json:"breed"`
	Sex         string `json:"sex" enum:"male,female,unknown"`
	DateOfBirth string `json:"date_of_birth,omitempty" format:"date"`
}

type createParentInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	UserAgent string `header:"User-Agent"`
	Body      struct {
		Name  string `json:"name" minLength:"1" maxLength:"120" example:"Zoya Menon"`
		Phone string `json:"phone" pattern:"^\\+[1-9][0-9]{7,14}$" patternDescription:"an E.164 phone number such as +919812345678" doc:"E.164 phone number" example:"+919812345678"`
		Email string `json:"email,omitempty" format:"email" maxLength:"320" example:"zoya@example.com"`
	}
}

type parentOutput struct {
	Body parentJSON
}

type createPetInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	UserAgent string `header:"User-Agent"`
	Body      struct {
		ParentID    string `json:"pet_parent_id" format:"uuid" doc:"The pet parent, registered first with POST /v1/clinics/{clinicID}/pet-parents"`
		Name        string `json:"name" minLength:"1" maxLength:"80" example:"Mithu"`
		Species     string `json:"species" minLength:"1" maxLength:"40" example:"Dog"`
		Breed       string `json:"breed,omitempty" maxLength:"80" example:"Indie"`
		Sex         string `json:"sex" enum:"male,female,unknown"`
		DateOfBirth string `json:"date_of_birth,omitempty" format:"date" doc:"YYYY-MM-DD, from 1950 up to today" example:"2021-03-14"`
	}
}

type petOutput struct {
	Location string `header:"Location"`
	Body     petJSON
}

type petPathInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	PetID     string `path:"petID" format:"uuid" doc:"Pet id"`
	UserAgent string `header:"User-Agent"`
}

type listPetsInput struct {
	ClinicID string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	ParentID string `query:"pet_parent_id" format:"uuid" doc:"Only the pets of this pet parent"`
	Limit    int    `query:"limit" minimum:"1" maximum:"500" default:"100" doc:"Maximum number of pets returned, by name"`
}

type listPetsOutput struct {
	Body struct {
		Pets []petJSON `json:"pets"`
	}
}

type updatePetInput struct {
	ClinicID string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	PetID    string `path:"petID" format:"uuid" doc:"Pet id"`
	Body     struct {
		Name        *string `json:"name,omitempty" minLength:"1" maxLength:"80"`
		Species     *string `json:"species,omitempty" minLength:"1" maxLength:"40"`
		Breed       *string `json:"breed,omitempty" maxLength:"80"`
		Sex         *string `json:"sex,omitempty" enum:"male,female,unknown"`
		DateOfBirth *string `json:"date_of_birth,omitempty" format:"date" doc:"YYYY-MM-DD, from 1950 up to today"`
	} `doc:"The fields to change, at least one; omitted fields stay as they are"`
}

type contactOutput struct {
	Body parentJSON
}

func registerPets(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID:   "create-pet-parent",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/pet-parents",
		Summary:       "Register a pet parent with their contact details",
		Tags:          []string{"Pets"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  4 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionEditContacts}), h.createParent)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "create-pet",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/pets",
		Summary:       "Register a pet of a pet parent",
		Tags:          []string{"Pets"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  4 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionCreatePets}), h.createPet)

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-pets",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/pets",
		Summary:     "List the clinic's pets by name",
		Tags:        []string{"Pets"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewPets}), h.listPets)

	huma.Register(api, declare(huma.Operation{
		OperationID: "get-pet",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/pets/{petID}",
		Summary:     "Show a pet's profile",
		Description: "The profile names the pet parent by id only; their contact details are at /contact.",
		Tags:        []string{"Pets"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewPet, Object: ObjectPet}), h.getPet)

	huma.Register(api, declare(huma.Operation{
		OperationID:  "update-pet",
		Method:       http.MethodPatch,
		Path:         "/v1/clinics/{clinicID}/pets/{petID}",
		Summary:      "Change a pet's profile",
		Tags:         []string{"Pets"},
		MaxBodyBytes: 4 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionEditPet, Object: ObjectPet}), h.updatePet)

	huma.Register(api, declare(huma.Operation{
		OperationID: "get-pet-contact",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/pets/{petID}/contact",
		Summary:     "Show the contact details of a pet's parent",
		Description: "Personal data: every read is written to the clinic's audit trail.",
		Tags:        []string{"Pets"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewContacts}), h.getContact)

	registerRecords(api, h)
	registerReferrals(api, h)
}

// actorOfPet returns the caller as the pet services record them.
func actorOfPet(ctx context.Context, userAgent string) pet.Actor {
	return pet.Actor{IdentityID: sessionFrom(ctx).IdentityID, IP: ClientIPFrom(ctx), UserAgent: userAgent}
}

func (h *handlers) createParent(ctx context.Context, in *createParentInput) (*parentOutput, error) {
	created, err := h.deps.Pets.CreateParent(ctx, uuid.MustParse(in.ClinicID), actorOfPet(ctx, in.UserAgent), pet.NewParent{
		Name: in.Body.Name, Phone: in.Body.Phone, Email: in.Body.Email,
	})
	if err != nil {
		return nil, h.problem(ctx, "create-pet-parent", err)
	}
	return &parentOutput{Body: parentFrom(created)}, nil
}

func (h *handlers) createPet(ctx context.Context, in *createPetInput) (*petOutput, error) {
	clinicID := uuid.MustParse(in.ClinicID)
	born, err := parseDate("date_of_birth", in.Body.DateOfBirth)
	if err != nil {
		return nil, err
	}
	created, err := h.deps.Pets.Create(ctx, clinicID, actorOfPet(ctx, in.UserAgent), pet.NewPet{
		ParentID:    uuid.MustParse(in.Body.ParentID),
		Name:        in.Body.Name,
		Species:     in.Body.Species,
		Breed:       in.Body.Breed,
		Sex:         pet.Sex(in.Body.Sex),
		DateOfBirth: born,
	})
	if err != nil {
		return nil, h.problem(ctx, "create-pet", err)
	}
	return &petOutput{
		Location: "/v1/clinics/" + clinicID.String() + "/pets/" + created.ID.String(),
		Body:     petFrom(created),
	}, nil
}

func (h *handlers) listPets(ctx context.Context, in *listPetsInput) (*listPetsOutput, error) {
	q := pet.Query{Limit: in.Limit}
	if in.ParentID != "" {
		q.ParentID = uuid.MustParse(in.ParentID)
	}
	found, err := h.deps.Pets.List(ctx, uuid.MustParse(in.ClinicID), q)
	if err != nil {
		return nil, h.problem(ctx, "list-pets", err)
	}
	out := &listPetsOutput{}
	out.Body.Pets = make([]petJSON, 0, len(found))
	for _, p := range found {
		out.Body.Pets = append(out.Body.Pets, petFrom(p))
	}
	return out, nil
}

func (h *handlers) getPet(ctx context.Context, in *petPathInput) (*petOutput, error) {
	found, err := h.deps.Pets.Get(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID))
	if err != nil {
		return nil, h.problem(ctx, "get-pet", err)
	}
	return &petOutput{Body: petFrom(found)}, nil
}

func (h *handlers) updatePet(ctx context.Context, in *updatePetInput) (*petOutput, error) {
	change := pet.Change{Name: in.Body.Name, Species: in.Body.Species, Breed: in.Body.Breed}
	if in.Body.Sex != nil {
		sex := pet.Sex(*in.Body.Sex)
		change.Sex = &sex
	}
	if in.Body.DateOfBirth != nil {
		born, err := parseDate("date_of_birth", *in.Body.DateOfBirth)
		if err != nil {
			return nil, err
		}
		change.DateOfBirth = &born
	}
	updated, err := h.deps.Pets.Update(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), change)
	if err != nil {
		return nil, h.problem(ctx, "update-pet", err)
	}
	return &petOutput{Body: petFrom(updated)}, nil
}

func (h *handlers) getContact(ctx context.Context, in *petPathInput) (*contactOutput, error) {
	found, err := h.deps.Pets.Contact(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), actorOfPet(ctx, in.UserAgent))
	if err != nil {
		return nil, h.problem(ctx, "get-pet-contact", err)
	}
	return &contactOutput{Body: parentFrom(found)}, nil
}

// parseDate parses a YYYY-MM-DD date of the request body; "" is the zero
// time. Huma has checked the format already, so an error here means a
// date that does not exist, such as 2023-02-30.
func parseDate(field, value string) (time.Time, error) {
	if value == "" {
		return time.Time{}, nil
	}
	date, err := time.Parse(time.DateOnly, value)
	if err != nil {
		return time.Time{}, fieldProblem(field, "must be a date, YYYY-MM-DD")
	}
	return date, nil
}
