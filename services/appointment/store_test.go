package appointment_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/services/appointment"
	"vetvault/tenants"
	"vetvault/tenants/tenanttest"
)

// newClinic inserts a clinic with one branch and returns the branch id.
func newClinic(t *testing.T, db *tenants.DB, clinicID uuid.UUID) uuid.UUID {
	t.Helper()
	branchID := uuid.New()
	err := db.InClinic(context.Background(), clinicID, func(tx pgx.Tx) error {
		ctx := context.Background()
		if _, err := tx.Exec(ctx, `INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, 'Test Clinic', $2)`, clinicID, uuid.New()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO branches (tenant_id, id, name) VALUES ($1, $2, 'Main')`, clinicID, branchID)
		return err
	})
	if err != nil {
		t.Fatalf("insert clinic: %v", err)
	}
	return branchID
}

func TestStoreBookGetList(t *testing.T) {
	db := tenanttest.New(t)
	store := appointment.NewStore(db.App)
	ctx := context.Background()
	clinicA, clinicB := uuid.New(), uuid.New()
	branchA := newClinic(t, db.App, clinicA)
	branchB := newClinic(t, db.App, clinicB)
	staff := uuid.New()
	day := time.Date(2026, 12, 7, 0, 0, 0, 0, time.FixedZone("IST", 19800))

	var booked []appointment.Appointment
	for _, hour := range []int{11, 9, 18} {
		booking := validBooking()
		booking.BranchID = branchA
		booking.StartsAt = day.Add(time.Duration(hour) * time.Hour)
		a, err := store.Book(ctx, clinicA, staff, booking)
		if err != nil {
			t.Fatalf("Book at %d:00: %v", hour, err)
		}
		booked = append(booked, a)
	}

	t.Run("get returns the booking", func(t *testing.T) {
		got, err := store.Get(ctx, clinicA, booked[0].ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.PetName != "Mithu" || got.Duration != 20*time.Minute || got.Status != appointment.StatusBooked || got.CreatedBy != staff {
			t.Errorf("Get = %+v, want the booked appointment", got)
		}
		if !got.StartsAt.Equal(booked[0].StartsAt) {
			t.Errorf("StartsAt = %v, want %v", got.StartsAt, booked[0].StartsAt)
		}
	})

	t.Run("list is ordered by start", func(t *testing.T) {
		list, err := store.List(ctx, clinicA, appointment.Query{Limit: 10})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list) != 3 {
			t.Fatalf("List returned %d appointments, want 3", len(list))
		}
		for i := 1; i < len(list); i++ {
			if list[i].StartsAt.Before(list[i-1].StartsAt) {
				t.Errorf("appointment %d starts before appointment %d", i, i-1)
			}
		}
	})

	t.Run("list window and limit", func(t *testing.T) {
		list, err := store.List(ctx, clinicA, appointment.Query{From: day.Add(10 * time.Hour), To: day.Add(24 * time.Hour), Limit: 1})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list) != 1 || list[0].ID != booked[0].ID {
			t.Errorf("List(10:00–24:00, limit 1) = %d appointments, want only the 11:00 one", len(list))
		}
	})

	t.Run("other clinic sees nothing", func(t *testing.T) {
		if _, err := store.Get(ctx, clinicB, booked[0].ID); !errors.Is(err, appointment.ErrNotFound) {
			t.Errorf("Get from clinic B error = %v, want ErrNotFound", err)
		}
		list, err := store.List(ctx, clinicB, appointment.Query{Limit: 10})
		if err != nil {
			t.Fatalf("List as clinic B: %v", err)
		}
		if len(list) != 0 {
			t.Errorf("clinic B lists %d appointments, want 0", len(list))
		}
	})

	t.Run("branch of another clinic is rejected", func(t *testing.T) {
		booking := validBooking()
		booking.BranchID = branchB
		if _, err := store.Book(ctx, clinicA, staff, booking); !errors.Is(err, appointment.ErrBranchNotFound) {
			t.Errorf("Book with clinic B's branch error = %v, want ErrBranchNotFound", err)
		}
	})

	t.Run("invalid booking writes nothing", func(t *testing.T) {
		booking := validBooking()
		booking.BranchID = branchA
		booking.PetParentPhone = "12345"
		var invalid *appointment.InvalidBookingError
		if _, err := store.Book(ctx, clinicA, staff, booking); !errors.As(err, &invalid) {
			t.Errorf("Book with a bad phone error = %v, want *InvalidBookingError", err)
		}
		list, err := store.List(ctx, clinicA, appointment.Query{Limit: 10})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list) != 3 {
			t.Errorf("clinic A has %d appointments after a rejected booking, want 3", len(list))
		}
	})
}
