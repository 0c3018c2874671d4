package appointment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/tenants"
)

// Store keeps appointments in the clinic's tenant of the database.
type Store struct {
	db *tenants.DB
}

// NewStore returns a store on db.
func NewStore(db *tenants.DB) *Store {
	return &Store{db: db}
}

const foreignKeyViolation = "23503"

const columns = `id, tenant_id, branch_id, pet_name, species, pet_parent_name, pet_parent_phone,
	starts_at, duration_minutes, reason, status, created_by, created_at`

// Book validates and stores a booking made by createdBy in clinicID.
func (s *Store) Book(ctx context.Context, clinicID, createdBy uuid.UUID, booking Booking) (Appointment, error) {
	booking, err := booking.Normalise()
	if err != nil {
		return Appointment{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Appointment{}, fmt.Errorf("generate appointment id: %w", err)
	}

	var booked Appointment
	err = s.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		row := tx.QueryRow(ctx, `INSERT INTO appointments
			(tenant_id, id, branch_id, pet_name, species, pet_parent_name, pet_parent_phone,
			 starts_at, duration_minutes, reason, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			RETURNING `+columns,
			clinicID, id, booking.BranchID, booking.PetName, booking.Species, booking.PetParentName,
			booking.PetParentPhone, booking.StartsAt, int(booking.Duration/time.Minute), booking.Reason, createdBy)
		booked, err = scan(row)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation {
		return Appointment{}, ErrBranchNotFound
	}
	if err != nil {
		return Appointment{}, fmt.Errorf("book appointment in clinic %s: %w", clinicID, err)
	}
	return booked, nil
}

// Get returns one appointment of clinicID.
func (s *Store) Get(ctx context.Context, clinicID, id uuid.UUID) (Appointment, error) {
	var found Appointment
	err := s.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		var err error
		found, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM appointments WHERE tenant_id = $1 AND id = $2`, clinicID, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Appointment{}, ErrNotFound
	}
	if err != nil {
		return Appointment{}, fmt.Errorf("get appointment %s in clinic %s: %w", id, clinicID, err)
	}
	return found, nil
}

// List returns the appointments of clinicID that match q, earliest first.
// A zero From or To leaves that end open; Limit is clamped to 1…MaxListLimit.
func (s *Store) List(ctx context.Context, clinicID uuid.UUID, q Query) ([]Appointment, error) {
	limit := min(max(q.Limit, 1), MaxListLimit)
	var from, to, branch any
	if !q.From.IsZero() {
		from = q.From
	}
	if !q.To.IsZero() {
		to = q.To
	}
	if q.BranchID != uuid.Nil {
		branch = q.BranchID
	}

	var found []Appointment
	err := s.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+columns+` FROM appointments
			WHERE tenant_id = $1
			  AND ($2::timestamptz IS NULL OR starts_at >= $2)
			  AND ($3::timestamptz IS NULL OR starts_at < $3)
			  AND ($4::uuid IS NULL OR branch_id = $4)
			ORDER BY starts_at, id
			LIMIT $5`, clinicID, from, to, branch, limit)
		if err != nil {
			return fmt.Errorf("select appointments: %w", err)
		}
		found, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Appointment, error) { return scan(row) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list appointments in clinic %s: %w", clinicID, err)
	}
	return found, nil
}

func scan(row pgx.Row) (Appointment, error) {
	var a Appointment
	var minutes int
	var status string
	err := row.Scan(&a.ID, &a.ClinicID, &a.BranchID, &a.PetName, &a.Species, &a.PetParentName, &a.PetParentPhone,
		&a.StartsAt, &minutes, &a.Reason, &status, &a.CreatedBy, &a.CreatedAt)
	a.Duration = time.Duration(minutes) * time.Minute
	a.Status = Status(status)
	return a, err
}
