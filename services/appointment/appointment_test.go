package appointment_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/services/appointment"
)

func validBooking() appointment.Booking {
	return appointment.Booking{
		BranchID:       uuid.New(),
		PetName:        "Mithu",
		Species:        "Dog",
		PetParentName:  "Test Parent",
		PetParentPhone: "+919812345678",
		StartsAt:       time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC),
		Duration:       20 * time.Minute,
		Reason:         "Weight check",
	}
}

func TestBookingNormalise(t *testing.T) {
	tests := []struct {
		name      string
		change    func(*appointment.Booking)
		wantField string // "" when the booking is valid
	}{
		{"valid booking passes", func(*appointment.Booking) {}, ""},
		{"one minute is the shortest", func(b *appointment.Booking) { b.Duration = time.Minute }, ""},
		{"a whole day is the longest", func(b *appointment.Booking) { b.Duration = 24 * time.Hour }, ""},
		{"missing branch", func(b *appointment.Booking) { b.BranchID = uuid.Nil }, "branch_id"},
		{"blank pet name", func(b *appointment.Booking) { b.PetName = "   " }, "pet_name"},
		{"long species", func(b *appointment.Booking) { b.Species = strings.Repeat("x", 41) }, "species"},
		{"blank pet parent", func(b *appointment.Booking) { b.PetParentName = "" }, "pet_parent_name"},
		{"phone without plus", func(b *appointment.Booking) { b.PetParentPhone = "919812345678" }, "pet_parent_phone"},
		{"phone with spaces", func(b *appointment.Booking) { b.PetParentPhone = "+91 98123 45678" }, "pet_parent_phone"},
		{"phone too short", func(b *appointment.Booking) { b.PetParentPhone = "+91981" }, "pet_parent_phone"},
		{"phone with letters", func(b *appointment.Booking) { b.PetParentPhone = "+91981234567a" }, "pet_parent_phone"},
		{"missing start", func(b *appointment.Booking) { b.StartsAt = time.Time{} }, "starts_at"},
		{"zero duration", func(b *appointment.Booking) { b.Duration = 0 }, "duration_minutes"},
		{"longer than a day", func(b *appointment.Booking) { b.Duration = 24*time.Hour + time.Minute }, "duration_minutes"},
		{"blank reason", func(b *appointment.Booking) { b.Reason = "\t" }, "reason"},
		{"long reason", func(b *appointment.Booking) { b.Reason = strings.Repeat("é", 501) }, "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			booking := validBooking()
			tt.change(&booking)
			_, err := booking.Normalise()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Normalise() error = %v, want nil", err)
				}
				return
			}
			var invalid *appointment.InvalidBookingError
			if !errors.As(err, &invalid) {
				t.Fatalf("Normalise() error = %v, want *InvalidBookingError", err)
			}
			if invalid.Field != tt.wantField {
				t.Errorf("invalid field = %q, want %q", invalid.Field, tt.wantField)
			}
		})
	}
}

func TestBookingNormaliseTrims(t *testing.T) {
	booking := validBooking()
	booking.PetName = "  Mithu "
	got, err := booking.Normalise()
	if err != nil {
		t.Fatalf("Normalise() error = %v", err)
	}
	if got.PetName != "Mithu" {
		t.Errorf("PetName = %q, want %q", got.PetName, "Mithu")
	}
}
