package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/services/appointment"
)

// The Keto permissions on a clinic that appointment operations need.
const (
	permissionViewAppointments = "view_appointments"
	permissionBookAppointments = "book_appointments"
)

// clinicTime is the clock of every clinic: VetVault serves India, which has
// one time zone (UTC+05:30) and no daylight saving time.
var clinicTime = time.FixedZone("IST", 5*60*60+30*60)

type appointmentJSON struct {
	ID              string    `json:"id" format:"uuid"`
	ClinicID        string    `json:"clinic_id" format:"uuid"`
	BranchID        string    `json:"branch_id" format:"uuid"`
	PetName         string    `json:"pet_name"`
	Species         string    `json:"species"`
	PetParentName   string    `json:"pet_parent_name"`
	PetParentPhone  string    `json:"pet_parent_phone"`
	StartsAt        time.Time `json:"starts_at"`
	DurationMinutes int       `json:"duration_minutes"`
	Reason          string    `json:"reason"`
	Status          string    `json:"status" enum:"booked,checked_in,completed,no_show,cancelled"`
	CreatedAt       time.Time `json:"created_at"`
}

func appointmentFrom(a appointment.Appointment) appointmentJSON {
	return appointmentJSON{
		ID:              a.ID.String(),
		ClinicID:        a.ClinicID.String(),
		BranchID:        a.BranchID.String(),
		PetName:         a.PetName,
		Species:         a.Species,
		PetParentName:   a.PetParentName,
		PetParentPhone:  a.PetParentPhone,
		StartsAt:        a.StartsAt.In(clinicTime),
		DurationMinutes: int(a.Duration / time.Minute),
		Reason:          a.Reason,
		Status:          string(a.Status),
		CreatedAt:       a.CreatedAt.In(clinicTime),
	}
}

// BookingFields are the fields of a booking besides its branch, shared by
// the clinic-wide and the branch-scoped booking operations. It is exported
// because Huma reads the fields of embedded structs only when exported.
type BookingFields struct {
	PetName         string    `json:"pet_name" minLength:"1" maxLength:"80" example:"Mithu"`
	Species         string    `json:"species" minLength:"1" maxLength:"40" example:"Dog"`
	PetParentName   string    `json:"pet_parent_name" minLength:"1" maxLength:"120" example:"Zoya Menon"`
	PetParentPhone  string    `json:"pet_parent_phone" pattern:"^\\+[1-9][0-9]{7,14}$" patternDescription:"an E.164 phone number such as +919812345678" doc:"E.164 phone number" example:"+919812345678"`
	StartsAt        time.Time `json:"starts_at" doc:"Start, RFC 3339 with an offset" example:"2026-12-07T09:00:00+05:30"`
	DurationMinutes int       `json:"duration_minutes" minimum:"1" maximum:"1440" doc:"Length in minutes, at most a day"`
	Reason          string    `json:"reason" minLength:"1" maxLength:"500" example:"Annual vaccination"`
}

type bookAppointmentInput struct {
	ClinicID string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	Body     struct {
		BranchID string `json:"branch_id" format:"uuid" doc:"Branch where the visit takes place"`
		BookingFields
	}
}

type bookBranchAppointmentInput struct {
	ClinicID string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	BranchID string `path:"branchID" format:"uuid" doc:"Branch where the visit takes place"`
	Body     BookingFields
}

type appointmentOutput struct {
	Location string `header:"Location"`
	Body     appointmentJSON
}

type getAppointmentInput struct {
	ClinicID      string `path:"clinicID" format:"uuid" doc:"Clinic id"`
	AppointmentID string `path:"appointmentID" format:"uuid" doc:"Appointment id"`
}

type listAppointmentsInput struct {
	ClinicID string    `path:"clinicID" format:"uuid" doc:"Clinic id"`
	Date     string    `query:"date" format:"date" doc:"A day in the clinic's time zone (IST), YYYY-MM-DD; overrides from and to"`
	From     time.Time `query:"from" doc:"Earliest start, inclusive, RFC 3339"`
	To       time.Time `query:"to" doc:"Latest start, exclusive, RFC 3339"`
	BranchID string    `query:"branch_id" format:"uuid" doc:"Only this branch"`
	Limit    int       `query:"limit" minimum:"1" maximum:"500" default:"100" doc:"Maximum number of appointments returned"`
}

type listBranchAppointmentsInput struct {
	ClinicID string    `path:"clinicID" format:"uuid" doc:"Clinic id"`
	BranchID string    `path:"branchID" format:"uuid" doc:"Branch id"`
	Date     string    `query:"date" format:"date" doc:"A day in the clinic's time zone (IST), YYYY-MM-DD; overrides from and to"`
	From     time.Time `query:"from" doc:"Earliest start, inclusive, RFC 3339"`
	To       time.Time `query:"to" doc:"Latest start, exclusive, RFC 3339"`
	Limit    int       `query:"limit" minimum:"1" maximum:"500" default:"100" doc:"Maximum number of appointments returned"`
}

type listAppointmentsOutput struct {
	Body struct {
		Appointments []appointmentJSON `json:"appointments"`
	}
}

func registerAppointments(api huma.API, h *handlers) {
	huma.Register(api, declare(huma.Operation{
		OperationID:   "book-appointment",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/appointments",
		Summary:       "Book an appointment",
		Tags:          []string{"Appointments"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  16 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionBookAppointments}), h.bookAppointment)

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-appointments",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/appointments",
		Summary:     "List appointments, earliest first",
		Tags:        []string{"Appointments"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewAppointments}), h.listAppointments)

	huma.Register(api, declare(huma.Operation{
		OperationID: "get-appointment",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/appointments/{appointmentID}",
		Summary:     "Show an appointment",
		Tags:        []string{"Appointments"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewAppointments}), h.getAppointment)

	// The branch-scoped operations check the permission on the branch, so a
	// role granted at one branch reaches that branch's schedule only, while
	// clinic-wide roles reach every branch through the branch's clinic.
	huma.Register(api, declare(huma.Operation{
		OperationID:   "book-branch-appointment",
		Method:        http.MethodPost,
		Path:          "/v1/clinics/{clinicID}/branches/{branchID}/appointments",
		Summary:       "Book an appointment at a branch",
		Tags:          []string{"Appointments"},
		DefaultStatus: http.StatusCreated,
		MaxBodyBytes:  16 << 10,
	}, Access{Audience: AudienceStaff, Permission: permissionBookAppointments, Object: ObjectBranch}), h.bookBranchAppointment)

	huma.Register(api, declare(huma.Operation{
		OperationID: "list-branch-appointments",
		Method:      http.MethodGet,
		Path:        "/v1/clinics/{clinicID}/branches/{branchID}/appointments",
		Summary:     "List a branch's appointments, earliest first",
		Tags:        []string{"Appointments"},
	}, Access{Audience: AudienceStaff, Permission: permissionViewAppointments, Object: ObjectBranch}), h.listBranchAppointments)
}

func (h *handlers) bookAppointment(ctx context.Context, in *bookAppointmentInput) (*appointmentOutput, error) {
	return h.book(ctx, "book-appointment", uuid.MustParse(in.ClinicID), uuid.MustParse(in.Body.BranchID), in.Body.BookingFields)
}

func (h *handlers) bookBranchAppointment(ctx context.Context, in *bookBranchAppointmentInput) (*appointmentOutput, error) {
	clinicID, branchID := uuid.MustParse(in.ClinicID), uuid.MustParse(in.BranchID)
	if err := h.requireBranch(ctx, "book-branch-appointment", clinicID, branchID); err != nil {
		return nil, err
	}
	return h.book(ctx, "book-branch-appointment", clinicID, branchID, in.Body)
}

func (h *handlers) book(ctx context.Context, operation string, clinicID, branchID uuid.UUID, fields BookingFields) (*appointmentOutput, error) {
	booked, err := h.deps.Appointments.Book(ctx, clinicID, sessionFrom(ctx).IdentityID, appointment.Booking{
		BranchID:       branchID,
		PetName:        fields.PetName,
		Species:        fields.Species,
		PetParentName:  fields.PetParentName,
		PetParentPhone: fields.PetParentPhone,
		StartsAt:       fields.StartsAt,
		Duration:       time.Duration(fields.DurationMinutes) * time.Minute,
		Reason:         fields.Reason,
	})
	if err != nil {
		return nil, h.problem(ctx, operation, err)
	}
	return &appointmentOutput{
		Location: "/v1/clinics/" + clinicID.String() + "/appointments/" + booked.ID.String(),
		Body:     appointmentFrom(booked),
	}, nil
}

// requireBranch returns a 404 problem unless branchID is a branch of
// clinicID. The access check ran on the branch alone, and a branch of
// another clinic must not be reachable through this clinic's path.
func (h *handlers) requireBranch(ctx context.Context, operation string, clinicID, branchID uuid.UUID) error {
	clinic, err := h.deps.Clinics.Get(ctx, clinicID)
	if err != nil {
		return h.problem(ctx, operation, err)
	}
	for _, b := range clinic.Branches {
		if b.ID == branchID {
			return nil
		}
	}
	return huma.Error404NotFound(msgBranchNotFound)
}

func (h *handlers) getAppointment(ctx context.Context, in *getAppointmentInput) (*appointmentOutput, error) {
	found, err := h.deps.Appointments.Get(ctx, uuid.MustParse(in.ClinicID), uuid.MustParse(in.AppointmentID))
	if err != nil {
		return nil, h.problem(ctx, "get-appointment", err)
	}
	return &appointmentOutput{Body: appointmentFrom(found)}, nil
}

func (h *handlers) listAppointments(ctx context.Context, in *listAppointmentsInput) (*listAppointmentsOutput, error) {
	q, err := scheduleQuery(in.Date, in.From, in.To, in.Limit)
	if err != nil {
		return nil, err
	}
	if in.BranchID != "" {
		q.BranchID = uuid.MustParse(in.BranchID)
	}
	return h.list(ctx, "list-appointments", uuid.MustParse(in.ClinicID), q)
}

func (h *handlers) listBranchAppointments(ctx context.Context, in *listBranchAppointmentsInput) (*listAppointmentsOutput, error) {
	clinicID, branchID := uuid.MustParse(in.ClinicID), uuid.MustParse(in.BranchID)
	if err := h.requireBranch(ctx, "list-branch-appointments", clinicID, branchID); err != nil {
		return nil, err
	}
	q, err := scheduleQuery(in.Date, in.From, in.To, in.Limit)
	if err != nil {
		return nil, err
	}
	q.BranchID = branchID
	return h.list(ctx, "list-branch-appointments", clinicID, q)
}

// scheduleQuery builds the query of a schedule listing; date, a day in the
// clinic's time zone, overrides from and to.
func scheduleQuery(date string, from, to time.Time, limit int) (appointment.Query, error) {
	q := appointment.Query{From: from, To: to, Limit: limit}
	if date != "" {
		day, err := time.ParseInLocation(time.DateOnly, date, clinicTime)
		if err != nil {
			return q, huma.Error422UnprocessableEntity(msgValidationFailed, &huma.ErrorDetail{Location: "query.date", Message: "must be a date, YYYY-MM-DD"})
		}
		q.From, q.To = day, day.AddDate(0, 0, 1)
	}
	return q, nil
}

func (h *handlers) list(ctx context.Context, operation string, clinicID uuid.UUID, q appointment.Query) (*listAppointmentsOutput, error) {
	found, err := h.deps.Appointments.List(ctx, clinicID, q)
	if err != nil {
		return nil, h.problem(ctx, operation, err)
	}
	out := &listAppointmentsOutput{}
	out.Body.Appointments = make([]appointmentJSON, 0, len(found))
	for _, a := range found {
		out.Body.Appointments = append(out.Body.Appointments, appointmentFrom(a))
	}
	return out, nil
}
