package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/services/pet"
)

// RecordService appends to and reads pets' clinical records.
type RecordService interface {
	AddConsultation(ctx context.Context, clinicID, petID uuid.UUID, actor pet.Actor, entry pet.Consultation) (pet.Record, error)
	AddVitals(ctx context.Context, clinicID, petID uuid.UUID, actor pet.Actor, entry pet.Vitals) (pet.Record, error)
	AddTreatmentNote(ctx context.Context, clinicID, petID uuid.UUID, actor pet.Actor, entry pet.TreatmentNote) (pet.Record, error)
	List(ctx context.Context, clinicID, petID uuid.UUID, reader pet.Actor) (pet.Pet, []pet.Record, error)
}

type recordJSON struct {
	ID            string             `json:"id" format:"uuid"`
	PetID         string             `json:"pet_id" format:"uuid"`
	Kind          string             `json:"kind" enum:"consultation,vitals,treatment_note"`
	RecordedBy    string             `json:"recorded_by" format:"uuid"`
	RecordedAt    time.Time          `json:"recorded_at"`
	Consultation  *consultationJSON  `json:"consultation,omitempty" doc:"Set when kind is consultation"`
	Vitals        *vitalsJSON        `json:"vitals,omitempty" doc:"Set when kind is vitals"`
	TreatmentNote *treatmentNoteJSON `json:"treatment_note,omitempty" doc:"Set when kind is treatment_note"`
}

type consultationJSON struct {
	Notes        string `json:"notes" minLength:"1" maxLength:"10000" doc:"Clinical notes"`
	Diagnosis    string `json:"diagnosis,omitempty" maxLength:"2000"`
	Prescription string `json:"prescription,omitempty" maxLength:"4000"`
}

type vitalsJSON struct {
	WeightKg           *float64 `json:"weight_kg,omitempty" exclusiveMinimum:"0" maximum:"2000" doc:"Body weight in kilograms"`
	TemperatureC       *float64 `json:"temperature_c,omitempty" minimum:"25" maximum:"45" doc:"Body temperature in degrees Celsius"`
	HeartRateBPM       *int     `json:"heart_rate_bpm,omitempty" minimum:"1" maximum:"400" doc:"Heart rate in beats per minute"`
	RespiratoryRateBPM *int     `json:"respiratory_rate_bpm,omitempty" minimum:"1" maximum:"200" doc:"Breaths per minute"`
	Notes              string   `json:"notes,omitempty" maxLength:"1000"`
}

type treatmentNoteJSON struct {
	Text string `json:"text" minLength:"1" maxLength:"4000"`
}

func recordFrom(r pet.Record) recordJSON {
	out := recordJSON{
		ID: r.ID.String(), PetID: r.PetID.String(), Kind: string(r.Kind),
		RecordedBy: r.RecordedBy.String(), RecordedAt: r.RecordedAt.In(clinicTime),
	}
	switch {
	case r.Consultation != nil:
		out.Consultation = &consultationJSON{Notes: r.Consultation.Notes, Diagnosis: r.Consultation.Diagnosis, Prescription: r.Consultation.Prescription}
	case r.Vitals != nil:
		v := vitalsJSON(*r.Vitals)
		out.Vitals = &v
	case r.TreatmentNote != nil:
		out.TreatmentNote = &treatmentNoteJSON{Text: r.TreatmentNote.Text}
	}
	return out
}

type addConsultationInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	PetID     string `path:"petID" format:"uuid" doc:"Pet id"`
	UserAgent string `header:"User-Agent"`
	Body      consultationJSON
}

type addVitalsInput struct {
	ClinicID  string     `path:"clinicID" format:"uuid" doc:"Clinic id"`
	PetID     string     `path:"petID" format:"uuid" doc:"Pet id"`
	UserAgent string     `header:"User-Agent"`
	Body      vitalsJSON `doc:"At least one measurement"`
}

type addTreatmentNoteInput struct {
	ClinicID  string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	PetID     string `path:"petID" format:"uuid" doc:"Pet id"`
	UserAgent string `header:"User-Agent"`
	Body      treatmentNoteJSON
}

type recordOutput struct {
	Body recordJSON
}

type recordsOutput struct {
	Body struct {
		Pet     patientJSON  `json:"pet"`
		Records []recordJSON `json:"records" doc:"Newest first, at most 1000"`
	}
}

func registerRecords(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID: "list-records",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/pets/{petID}/records",
		Summary:     "Show a pet's clinical record",
		Description: "Open to the clinic's roles that read records, and to a vet of another clinic while a referral of this pet to them is active. Every read is written to the clinic's audit trail.",
		Tags:        []string{"Clinical records"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewRecords, Object: ObjectPet}), h.listRecords)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "add-consultation",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/pets/{petID}/records/consultations",
		Summary:       "Add a consultation: clinical notes, diagnosis and prescription",
		Tags:          []string{"Clinical records"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  64 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionWriteRecords, Object: ObjectPet}), h.addConsultation)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "add-vitals",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/pets/{petID}/records/vitals",
		Summary:       "Add vital signs",
		Tags:          []string{"Clinical records"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  8 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionAddVitals, Object: ObjectPet}), h.addVitals)

	huma.Register(api, declare(huma.Operation{
		OperationID:   "add-treatment-note",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/pets/{petID}/records/treatment-notes",
		Summary:       "Add a treatment note",
		Tags:          []string{"Clinical records"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  32 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionAddVitals, Object: ObjectPet}), h.addTreatmentNote)
}

func (h *handlers) listRecords(ctx context.Context, in *petPathInput) (*recordsOutput, error) {
	found, records, err := h.deps.Records.List(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), actorOfPet(ctx, in.UserAgent))
	if err != nil {
		return nil, h.problem(ctx, "list-records", err)
	}
	out := &recordsOutput{}
	profile := petFrom(found)
	out.Body.Pet = patientJSON{ID: profile.ID, Name: profile.Name, Species: profile.Species, Breed: profile.Breed, Sex: profile.Sex, DateOfBirth: profile.DateOfBirth}
	out.Body.Records = make([]recordJSON, 0, len(records))
	for _, r := range records {
		out.Body.Records = append(out.Body.Records, recordFrom(r))
	}
	return out, nil
}

func (h *handlers) addConsultation(ctx context.Context, in *addConsultationInput) (*recordOutput, error) {
	added, err := h.deps.Records.AddConsultation(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), actorOfPet(ctx, in.UserAgent),
		pet.Consultation{Notes: in.Body.Notes, Diagnosis: in.Body.Diagnosis, Prescription: in.Body.Prescription})
	if err != nil {
		return nil, h.problem(ctx, "add-consultation", err)
	}
	return &recordOutput{Body: recordFrom(added)}, nil
}

func (h *handlers) addVitals(ctx context.Context, in *addVitalsInput) (*recordOutput, error) {
	added, err := h.deps.Records.AddVitals(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), actorOfPet(ctx, in.UserAgent),
		pet.Vitals(in.Body))
	if err != nil {
		return nil, h.problem(ctx, "add-vitals", err)
	}
	return &recordOutput{Body: recordFrom(added)}, nil
}

func (h *handlers) addTreatmentNote(ctx context.Context, in *addTreatmentNoteInput) (*recordOutput, error) {
	added, err := h.deps.Records.AddTreatmentNote(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.PetID), actorOfPet(ctx, in.UserAgent),
		pet.TreatmentNote{Text: in.Body.Text})
	if err != nil {
		return nil, h.problem(ctx, "add-treatment-note", err)
	}
	return &recordOutput{Body: recordFrom(added)}, nil
}
