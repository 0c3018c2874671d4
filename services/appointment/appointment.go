// Package appointment books and lists a clinic's appointments.
package appointment

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nyaruka/phonenumbers"
)

// Errors the store returns; the API layer maps them to status codes.
var (
	ErrNotFound       = errors.New("appointment not found")
	ErrBranchNotFound = errors.New("branch not found in this clinic")
)

// Status is the stage an appointment has reached in its day.
type Status string

// The appointment statuses. Only StatusBooked is set so far; check-in,
// completion and no-shows change it later.
const (
	StatusBooked    Status = "booked"
	StatusCheckedIn Status = "checked_in"
	StatusCompleted Status = "completed"
	StatusNoShow    Status = "no_show"
	StatusCancelled Status = "cancelled"
)

// Limits on what a booking may contain. The database checks the same bounds.
const (
	MaxDuration      = 24 * time.Hour
	maxPetNameLength = 80
	maxSpeciesLength = 40
	maxPersonLength  = 120
	maxReasonLength  = 500
)

// Appointment is a booked visit of one pet at one branch.
type Appointment struct {
	ID             uuid.UUID
	ClinicID       uuid.UUID
	BranchID       uuid.UUID
	PetName        string
	Species        string
	PetParentName  string
	PetParentPhone string // E.164, for example +919900000000
	StartsAt       time.Time
	Duration       time.Duration
	Reason         string
	Status         Status
	CreatedBy      uuid.UUID
	CreatedAt      time.Time
}

// Booking is a request to book an appointment.
type Booking struct {
	BranchID       uuid.UUID
	PetName        string
	Species        string
	PetParentName  string
	PetParentPhone string
	StartsAt       time.Time
	Duration       time.Duration
	Reason         string
}

// InvalidBookingError names the field of a booking that fails validation, in
// the JSON spelling clients send.
type InvalidBookingError struct {
	Field   string
	Message string
}

func (e *InvalidBookingError) Error() string {
	return fmt.Sprintf("invalid booking: %s: %s", e.Field, e.Message)
}

// Normalise trims the text fields and validates the booking. It returns the
// cleaned booking or an *InvalidBookingError for the first bad field.
func (b Booking) Normalise() (Booking, error) {
	b.PetName = strings.TrimSpace(b.PetName)
	b.Species = strings.TrimSpace(b.Species)
	b.PetParentName = strings.TrimSpace(b.PetParentName)
	b.PetParentPhone = strings.TrimSpace(b.PetParentPhone)
	b.Reason = strings.TrimSpace(b.Reason)

	if b.BranchID == uuid.Nil {
		return b, &InvalidBookingError{Field: "branch_id", Message: "is required"}
	}
	texts := []struct {
		field, value string
		max          int
	}{
		{"pet_name", b.PetName, maxPetNameLength},
		{"species", b.Species, maxSpeciesLength},
		{"pet_parent_name", b.PetParentName, maxPersonLength},
		{"reason", b.Reason, maxReasonLength},
	}
	for _, text := range texts {
		if text.value == "" {
			return b, &InvalidBookingError{Field: text.field, Message: "must not be blank"}
		}
		if utf8.RuneCountInString(text.value) > text.max {
			return b, &InvalidBookingError{Field: text.field, Message: fmt.Sprintf("must be at most %d characters", text.max)}
		}
	}
	if err := checkE164(b.PetParentPhone); err != nil {
		return b, &InvalidBookingError{Field: "pet_parent_phone", Message: err.Error()}
	}
	if b.StartsAt.IsZero() {
		return b, &InvalidBookingError{Field: "starts_at", Message: "is required"}
	}
	if b.Duration < time.Minute || b.Duration > MaxDuration || b.Duration%time.Minute != 0 {
		return b, &InvalidBookingError{Field: "duration_minutes", Message: "must be whole minutes from 1 to 1440"}
	}
	return b, nil
}

// checkE164 accepts a phone number only when it is already written in E.164
// and is a valid number for its country.
func checkE164(phone string) error {
	const format = "must be an E.164 number such as +919812345678"
	if !strings.HasPrefix(phone, "+") {
		return errors.New(format)
	}
	number, err := phonenumbers.Parse(phone, "")
	if err != nil || !phonenumbers.IsValidNumber(number) {
		return errors.New(format)
	}
	if phonenumbers.Format(number, phonenumbers.E164) != phone {
		return errors.New(format)
	}
	return nil
}

// Query selects appointments of a clinic: those starting in [From, To),
// optionally at one branch, earliest first.
type Query struct {
	From     time.Time
	To       time.Time
	BranchID uuid.UUID // uuid.Nil for every branch
	Limit    int
}

// MaxListLimit is the largest page of appointments one list returns.
const MaxListLimit = 500
