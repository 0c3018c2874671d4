package pet

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/tenants"
)

// Parent is a pet parent, a clinic's client. Name, Phone and Email are
// personal data.
type Parent struct {
	ID        uuid.UUID
	ClinicID  uuid.UUID
	Name      string
	Phone     string // E.164, for example +919812345678
	Email     string // "" when not given
	CreatedBy uuid.UUID
	CreatedAt time.Time
}

// NewParent is a request to register a pet parent.
type NewParent struct {
	Name  string
	Phone string
	Email string
}

// Sex is a pet's sex as the clinic records it.
type Sex string

// The recorded sexes.
const (
	SexMale    Sex = "male"
	SexFemale  Sex = "female"
	SexUnknown Sex = "unknown"
)

// Pet is a patient of a clinic.
type Pet struct {
	ID       uuid.UUID
	ClinicID uuid.UUID
	ParentID uuid.UUID
	Name     string
	Species  string
	Breed    string // "" when not recorded
	Sex      Sex
	// DateOfBirth is a calendar date at midnight UTC, zero when unknown.
	DateOfBirth time.Time
	CreatedBy   uuid.UUID
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// NewPet is a request to register a pet of an existing pet parent.
type NewPet struct {
	ParentID    uuid.UUID
	Name        string
	Species     string
	Breed       string
	Sex         Sex
	DateOfBirth time.Time
}

// Change is an edit of a pet's profile. A nil field stays as it is.
type Change struct {
	Name        *string
	Species     *string
	Breed       *string
	Sex         *Sex
	DateOfBirth *time.Time
}

// Query selects pets of a clinic, by name.
type Query struct {
	ParentID uuid.UUID // uuid.Nil for every pet parent
	Limit    int
}

// MaxListLimit is the largest page of pets one list returns.
const MaxListLimit = 500

// Limits on profile fields. The database checks the same bounds.
const (
	maxPersonName = 120
	maxEmail      = 320
	maxPetName    = 80
	maxSpecies    = 40
	maxBreed      = 80
)

// earliestBirth bounds dates of birth from below, to catch typing slips
// such as 1024 for 2024.
var earliestBirth = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)

// Registry registers pet parents and pets and reads their profiles.
type Registry struct {
	db     *tenants.DB
	outbox *tenants.Outbox
	now    func() time.Time
}

// NewRegistry returns the registry. outbox carries each new pet's Keto
// relationship.
func NewRegistry(db *tenants.DB, outbox *tenants.Outbox, now func() time.Time) *Registry {
	return &Registry{db: db, outbox: outbox, now: now}
}

func (n NewParent) normalise() (NewParent, error) {
	var err error
	if n.Name, err = trimText("name", n.Name, 1, maxPersonName); err != nil {
		return n, err
	}
	if n.Phone, err = trimText("phone", n.Phone, 1, 16); err != nil {
		return n, err
	}
	if err := checkE164("phone", n.Phone); err != nil {
		return n, err
	}
	if n.Email, err = trimText("email", n.Email, 0, maxEmail); err != nil || n.Email == "" {
		return n, err
	}
	address, parseErr := mail.ParseAddress(n.Email)
	if parseErr != nil || address.Name != "" {
		return n, &InvalidError{Field: "email", Message: "must be a plain email address such as name@example.com"}
	}
	n.Email = identity.NormaliseEmail(address.Address)
	return n, nil
}

// CreateParent registers a pet parent in clinicID and audits it.
func (r *Registry) CreateParent(ctx context.Context, clinicID uuid.UUID, actor Actor, in NewParent) (Parent, error) {
	in, err := in.normalise()
	if err != nil {
		return Parent{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Parent{}, fmt.Errorf("generate pet parent id: %w", err)
	}

	var created Parent
	err = r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		var email any
		if in.Email != "" {
			email = in.Email
		}
		created, err = scanParent(tx.QueryRow(ctx, `INSERT INTO pet_parents (tenant_id, id, name, phone, email, created_by)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+parentColumns,
			clinicID, id, in.Name, in.Phone, email, actor.IdentityID))
		if err != nil {
			return fmt.Errorf("insert pet parent: %w", err)
		}
		return audit.Append(ctx, tx, event(ActionParentCreated, actor, clinicID, uuid.Nil, r.now(),
			map[string]string{"pet_parent_id": id.String()}))
	})
	if err != nil {
		return Parent{}, fmt.Errorf("create pet parent in clinic %s: %w", clinicID, err)
	}
	return created, nil
}

func (n NewPet) normalise(today time.Time) (NewPet, error) {
	if n.ParentID == uuid.Nil {
		return n, &InvalidError{Field: "pet_parent_id", Message: "is required"}
	}
	var err error
	if n.Name, err = trimText("name", n.Name, 1, maxPetName); err != nil {
		return n, err
	}
	if n.Species, err = trimText("species", n.Species, 1, maxSpecies); err != nil {
		return n, err
	}
	if n.Breed, err = trimText("breed", n.Breed, 0, maxBreed); err != nil {
		return n, err
	}
	if err := checkSex(n.Sex); err != nil {
		return n, err
	}
	if !n.DateOfBirth.IsZero() {
		if err := checkBirth(n.DateOfBirth, today); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (c Change) normalise(today time.Time) (Change, error) {
	var err error
	if c.Name, err = trimOptional("name", c.Name, 1, maxPetName); err != nil {
		return c, err
	}
	if c.Species, err = trimOptional("species", c.Species, 1, maxSpecies); err != nil {
		return c, err
	}
	if c.Breed, err = trimOptional("breed", c.Breed, 0, maxBreed); err != nil {
		return c, err
	}
	if c.Sex != nil {
		if err := checkSex(*c.Sex); err != nil {
			return c, err
		}
	}
	if c.DateOfBirth != nil {
		if err := checkBirth(*c.DateOfBirth, today); err != nil {
			return c, err
		}
	}
	return c, nil
}

// trimOptional is trimText for a field that may be absent (nil).
func trimOptional(field string, value *string, minimum, maximum int) (*string, error) {
	if value == nil {
		return nil, nil
	}
	trimmed, err := trimText(field, *value, minimum, maximum)
	return &trimmed, err
}

func checkSex(sex Sex) error {
	switch sex {
	case SexMale, SexFemale, SexUnknown:
		return nil
	default:
		return &InvalidError{Field: "sex", Message: "must be male, female or unknown"}
	}
}

// checkBirth accepts a date of birth from 1950 up to today in India.
func checkBirth(born, today time.Time) error {
	if born.Before(earliestBirth) || born.After(today) {
		return &InvalidError{Field: "date_of_birth", Message: "must be a date from 1950-01-01 up to today"}
	}
	return nil
}

// indiaToday returns today's date in India (UTC+05:30) at midnight UTC,
// comparable with dates of birth.
func indiaToday(now time.Time) time.Time {
	local := now.In(time.FixedZone("IST", 5*60*60+30*60))
	return time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, time.UTC)
}

const foreignKeyViolation = "23503"

// Create registers a pet of an existing pet parent in clinicID.
//
// The relationship Pet:<id>#clinic@Clinic:<clinicID>, which gives the
// clinic's roles their permissions on the pet, goes through the outbox in
// the transaction that inserts the row, and reaches Keto after the commit.
// If that write fails, the pet exists but no role can reach it until the
// outbox's reconciler writes the relationship.
func (r *Registry) Create(ctx context.Context, clinicID uuid.UUID, actor Actor, in NewPet) (Pet, error) {
	in, err := in.normalise(indiaToday(r.now()))
	if err != nil {
		return Pet{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Pet{}, fmt.Errorf("generate pet id: %w", err)
	}

	var created Pet
	err = r.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		created, err = scanPet(tx.QueryRow(ctx, `INSERT INTO pets
			(tenant_id, id, pet_parent_id, name, species, breed, sex, date_of_birth, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING `+petColumns,
			clinicID, id, in.ParentID, in.Name, in.Species, in.Breed, string(in.Sex), dateOrNull(in.DateOfBirth), actor.IdentityID))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation {
			return ErrParentNotFound
		}
		if err != nil {
			return fmt.Errorf("insert pet: %w", err)
		}
		changes.Write(clinicRelationship(clinicID, id))
		return nil
	})
	if err != nil {
		return Pet{}, fmt.Errorf("create pet in clinic %s: %w", clinicID, err)
	}
	return created, nil
}

// Get returns a pet of clinicID.
func (r *Registry) Get(ctx context.Context, clinicID, petID uuid.UUID) (Pet, error) {
	var found Pet
	err := r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		var err error
		found, err = scanPet(tx.QueryRow(ctx, `SELECT `+petColumns+` FROM pets WHERE tenant_id = $1 AND id = $2`, clinicID, petID))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Pet{}, ErrNotFound
	}
	if err != nil {
		return Pet{}, fmt.Errorf("get pet %s in clinic %s: %w", petID, clinicID, err)
	}
	return found, nil
}

// List returns the pets of clinicID that match q, by name. Limit is clamped
// to 1…MaxListLimit.
//
// NOTE: there is no paging past the first MaxListLimit pets and no search by
// name. A keyset cursor on (name, id) would add paging.
func (r *Registry) List(ctx context.Context, clinicID uuid.UUID, q Query) ([]Pet, error) {
	limit := min(max(q.Limit, 1), MaxListLimit)
	var parent any
	if q.ParentID != uuid.Nil {
		parent = q.ParentID
	}

	var found []Pet
	err := r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+petColumns+` FROM pets
			WHERE tenant_id = $1 AND ($2::uuid IS NULL OR pet_parent_id = $2)
			ORDER BY name, id LIMIT $3`, clinicID, parent, limit)
		if err != nil {
			return fmt.Errorf("select pets: %w", err)
		}
		found, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Pet, error) { return scanPet(row) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list pets in clinic %s: %w", clinicID, err)
	}
	return found, nil
}

// Update applies change to a pet of clinicID and returns the pet as stored.
// A change without any field returns ErrEmptyChange.
func (r *Registry) Update(ctx context.Context, clinicID, petID uuid.UUID, change Change) (Pet, error) {
	if change == (Change{}) {
		return Pet{}, ErrEmptyChange
	}
	change, err := change.normalise(indiaToday(r.now()))
	if err != nil {
		return Pet{}, err
	}
	var sex, born any
	if change.Sex != nil {
		sex = string(*change.Sex)
	}
	if change.DateOfBirth != nil {
		born = *change.DateOfBirth
	}

	var updated Pet
	err = r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		updated, err = scanPet(tx.QueryRow(ctx, `UPDATE pets SET
			name = COALESCE($3, name),
			species = COALESCE($4, species),
			breed = COALESCE($5, breed),
			sex = COALESCE($6, sex),
			date_of_birth = COALESCE($7::date, date_of_birth),
			updated_at = now()
			WHERE tenant_id = $1 AND id = $2
			RETURNING `+petColumns,
			clinicID, petID, change.Name, change.Species, change.Breed, sex, born))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Pet{}, ErrNotFound
	}
	if err != nil {
		return Pet{}, fmt.Errorf("update pet %s in clinic %s: %w", petID, clinicID, err)
	}
	return updated, nil
}

// Contact returns the contact details of a pet's parent and audits that
// actor read them, because they are personal data.
func (r *Registry) Contact(ctx context.Context, clinicID, petID uuid.UUID, actor Actor) (Parent, error) {
	var found Parent
	err := r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		var err error
		found, err = scanParent(tx.QueryRow(ctx, `SELECT `+parentColumns+` FROM pet_parents
			WHERE tenant_id = $1 AND id = (SELECT pet_parent_id FROM pets WHERE tenant_id = $1 AND id = $2)`,
			clinicID, petID))
		if err != nil {
			return err
		}
		return audit.Append(ctx, tx, event(ActionContactViewed, actor, clinicID, uuid.Nil, r.now(),
			map[string]string{"pet_parent_id": found.ID.String(), "pet_id": petID.String()}))
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Parent{}, ErrNotFound
	}
	if err != nil {
		return Parent{}, fmt.Errorf("read contact of pet %s in clinic %s: %w", petID, clinicID, err)
	}
	return found, nil
}

const parentColumns = `id, tenant_id, name, phone, COALESCE(email, ''), created_by, created_at`

func scanParent(row pgx.Row) (Parent, error) {
	var p Parent
	err := row.Scan(&p.ID, &p.ClinicID, &p.Name, &p.Phone, &p.Email, &p.CreatedBy, &p.CreatedAt)
	return p, err
}

const petColumns = `id, tenant_id, pet_parent_id, name, species, breed, sex, date_of_birth, created_by, created_at, updated_at`

func scanPet(row pgx.Row) (Pet, error) {
	var p Pet
	var sex string
	var born *time.Time
	err := row.Scan(&p.ID, &p.ClinicID, &p.ParentID, &p.Name, &p.Species, &p.Breed, &sex, &born, &p.CreatedBy, &p.CreatedAt, &p.UpdatedAt)
	p.Sex = Sex(sex)
	if born != nil {
		p.DateOfBirth = *born
	}
	return p, err
}

func dateOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
