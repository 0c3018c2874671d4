package tenants

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
)

// ErrClinicNotFound is returned for a clinic that does not exist or is not
// visible in the current tenant.
var ErrClinicNotFound = errors.New("clinic not found")

// InvalidClinicError reports a field of a new clinic that fails validation.
type InvalidClinicError struct {
	Field   string
	Message string
}

func (e *InvalidClinicError) Error() string {
	return fmt.Sprintf("invalid clinic: %s: %s", e.Field, e.Message)
}

// Clinic is a tenant: one business with one subscription and one data boundary.
type Clinic struct {
	ID        uuid.UUID
	Name      string
	CreatedBy uuid.UUID
	CreatedAt time.Time
	Branches  []Branch
}

// Branch is a physical location of a clinic.
type Branch struct {
	ID   uuid.UUID
	Name string
}

// NewClinic is an owner's request to create a clinic with its first branch.
type NewClinic struct {
	Name       string
	BranchName string
	// OwnerEmail is stored with the owner's membership for the staff list.
	OwnerEmail string
}

// Clinics creates and reads clinics.
type Clinics struct {
	db     *DB
	outbox *Outbox
}

// NewClinics returns the clinic service. outbox carries the new clinic's
// relationships to Keto.
func NewClinics(db *DB, outbox *Outbox) *Clinics {
	return &Clinics{db: db, outbox: outbox}
}

const maxNameLength = 120

func (n NewClinic) normalise() (NewClinic, error) {
	n.Name = strings.TrimSpace(n.Name)
	n.BranchName = strings.TrimSpace(n.BranchName)
	switch {
	case n.Name == "":
		return n, &InvalidClinicError{Field: "name", Message: "must not be blank"}
	case len([]rune(n.Name)) > maxNameLength:
		return n, &InvalidClinicError{Field: "name", Message: fmt.Sprintf("must be at most %d characters", maxNameLength)}
	case n.BranchName == "":
		return n, &InvalidClinicError{Field: "branch_name", Message: "must not be blank"}
	case len([]rune(n.BranchName)) > maxNameLength:
		return n, &InvalidClinicError{Field: "branch_name", Message: fmt.Sprintf("must be at most %d characters", maxNameLength)}
	}
	return n, nil
}

// Create creates a clinic with its first branch and makes owner its owner.
//
// The rows, the owner membership and the outbox rows of the owner's and the
// branch's relationships are written in one transaction. The relationships
// are written to Keto before it commits, which is safe only because the
// clinic does not exist until then, so a Keto failure stores nothing.
func (c *Clinics) Create(ctx context.Context, owner uuid.UUID, input NewClinic) (Clinic, error) {
	input, err := input.normalise()
	if err != nil {
		return Clinic{}, err
	}
	clinicID, err := uuid.NewV7()
	if err != nil {
		return Clinic{}, fmt.Errorf("generate clinic id: %w", err)
	}
	branchID, err := uuid.NewV7()
	if err != nil {
		return Clinic{}, fmt.Errorf("generate branch id: %w", err)
	}

	clinic := Clinic{ID: clinicID, Name: input.Name, CreatedBy: owner, Branches: []Branch{{ID: branchID, Name: input.BranchName}}}
	err = c.outbox.inNewClinic(ctx, clinicID, func(tx pgx.Tx, changes *Changes) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, $2, $3) RETURNING created_at`,
			clinicID, input.Name, owner).Scan(&clinic.CreatedAt)
		if err != nil {
			return fmt.Errorf("insert clinic: %w", err)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO branches (tenant_id, id, name) VALUES ($1, $2, $3)`,
			clinicID, branchID, input.BranchName); err != nil {
			return fmt.Errorf("insert branch: %w", err)
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO memberships (tenant_id, identity_id, role, email) VALUES ($1, $2, $3, $4)`,
			clinicID, owner, string(identity.RoleOwner), identity.NormaliseEmail(input.OwnerEmail)); err != nil {
			return fmt.Errorf("insert owner membership: %w", err)
		}
		changes.Write(Grant{IdentityID: owner, Role: identity.RoleOwner}.Relationship(clinicID))
		changes.Write(BranchLinks(clinicID, branchID)...)
		return nil
	})
	if err != nil {
		return Clinic{}, fmt.Errorf("create clinic: %w", err)
	}
	return clinic, nil
}

// Get returns a clinic with its branches, ordered by name.
func (c *Clinics) Get(ctx context.Context, clinicID uuid.UUID) (Clinic, error) {
	clinic := Clinic{ID: clinicID}
	err := c.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`SELECT name, created_by, created_at FROM clinics WHERE tenant_id = $1`, clinicID).
			Scan(&clinic.Name, &clinic.CreatedBy, &clinic.CreatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrClinicNotFound
		}
		if err != nil {
			return fmt.Errorf("select clinic: %w", err)
		}

		rows, err := tx.Query(ctx, `SELECT id, name FROM branches WHERE tenant_id = $1 ORDER BY name`, clinicID)
		if err != nil {
			return fmt.Errorf("select branches: %w", err)
		}
		clinic.Branches, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Branch, error) {
			var b Branch
			err := row.Scan(&b.ID, &b.Name)
			return b, err
		})
		if err != nil {
			return fmt.Errorf("read branches: %w", err)
		}
		return nil
	})
	if err != nil {
		return Clinic{}, fmt.Errorf("get clinic %s: %w", clinicID, err)
	}
	return clinic, nil
}
