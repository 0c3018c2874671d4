package pet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/tenants"
)

// MaxReferralLifetime is the longest a referral may run: the granting vet
// sets an expiry at most this far ahead.
const MaxReferralLifetime = 30 * 24 * time.Hour

// Referral shares one pet's clinical records with a staff member of another
// clinic (the recipient, usually a vet) until ExpiresAt.
type Referral struct {
	ID        uuid.UUID
	ClinicID  uuid.UUID
	PetID     uuid.UUID
	VetID     uuid.UUID
	VetEmail  string
	GrantedBy uuid.UUID
	GrantedAt time.Time
	ExpiresAt time.Time
	// EndedAt is zero while the referral is open. For an expired referral
	// it is ExpiresAt, when access ended, not when the sweeper ran.
	EndedAt   time.Time
	EndReason ReferralStatus // "" while open
	EndedBy   uuid.UUID      // uuid.Nil unless revoked
}

// ReferralStatus is the state of a referral: active, expired or revoked.
type ReferralStatus string

// The referral statuses.
const (
	ReferralActive  ReferralStatus = "active"
	ReferralExpired ReferralStatus = "expired"
	ReferralRevoked ReferralStatus = "revoked"
)

// Status returns the referral's status at now. An open referral whose
// expiry has passed is expired even before the sweeper ends it.
func (r Referral) Status(now time.Time) ReferralStatus {
	switch {
	case r.EndReason != "":
		return r.EndReason
	case !r.ExpiresAt.After(now):
		return ReferralExpired
	default:
		return ReferralActive
	}
}

// grants reports whether r gives its recipient access at now.
func (r Referral) grants(now time.Time) bool {
	return r.ID != uuid.Nil && r.Status(now) == ReferralActive
}

// NewReferral is a request to share a pet's records. It names the recipient
// by Email or by IdentityID, not both.
type NewReferral struct {
	Email      string
	IdentityID uuid.UUID
	ExpiresAt  time.Time
}

// Directory finds staff logins in Kratos.
type Directory interface {
	FindByEmail(ctx context.Context, email string) (identity.Identity, error)
	Get(ctx context.Context, id uuid.UUID) (identity.Identity, error)
}

// Referrals grants, revokes, lists and expires referrals.
type Referrals struct {
	db          *tenants.DB
	outbox      *tenants.Outbox
	permissions Permissions
	directory   Directory
	now         func() time.Time
	log         *slog.Logger
}

// NewReferrals returns the referral service. outbox carries the referrals'
// Keto relationships, and log receives the sweeper's failures.
func NewReferrals(db *tenants.DB, outbox *tenants.Outbox, permissions Permissions, directory Directory,
	now func() time.Time, log *slog.Logger) *Referrals {
	return &Referrals{db: db, outbox: outbox, permissions: permissions, directory: directory, now: now, log: log}
}

// validate checks in at now and returns the staff login it names as the
// recipient.
func (s *Referrals) validate(ctx context.Context, clinicID uuid.UUID, actor Actor, in NewReferral, now time.Time) (identity.Identity, error) {
	switch {
	case in.ExpiresAt.IsZero():
		return identity.Identity{}, &InvalidError{Field: "expires_at", Message: "is required"}
	case !in.ExpiresAt.After(now):
		return identity.Identity{}, &InvalidError{Field: "expires_at", Message: "must be in the future"}
	case in.ExpiresAt.Sub(now) > MaxReferralLifetime:
		return identity.Identity{}, &InvalidError{Field: "expires_at", Message: "must be at most 30 days from now"}
	}

	field := "identity_id"
	var found identity.Identity
	var err error
	switch {
	case in.Email != "" && in.IdentityID != uuid.Nil:
		return identity.Identity{}, &InvalidError{Field: "identity_id", Message: "give either email or identity_id, not both"}
	case in.Email != "":
		field = "email"
		address, parseErr := mail.ParseAddress(in.Email)
		if parseErr != nil || address.Name != "" || len(address.Address) > maxEmail {
			return identity.Identity{}, &InvalidError{Field: field, Message: "must be a plain email address such as name@example.com"}
		}
		found, err = s.directory.FindByEmail(ctx, address.Address)
	case in.IdentityID != uuid.Nil:
		found, err = s.directory.Get(ctx, in.IdentityID)
	default:
		return identity.Identity{}, &InvalidError{Field: "email", Message: "is required: give the email or the identity_id of the person to share with"}
	}

	notStaff := &InvalidError{Field: field, Message: "must name an active VetVault staff login"}
	switch {
	case errors.Is(err, identity.ErrIdentityNotFound):
		return identity.Identity{}, notStaff
	case err != nil:
		return identity.Identity{}, fmt.Errorf("find recipient: %w", err)
	case found.SchemaID != identity.SchemaStaff || !found.Active:
		return identity.Identity{}, notStaff
	case found.ID == actor.IdentityID:
		return identity.Identity{}, &InvalidError{Field: field, Message: "must name someone else: you cannot share records with yourself"}
	}

	// A member of this clinic reads what their role allows. A referral on
	// top would outlive a later change of that role.
	member, err := s.permissions.Check(ctx, identity.ClinicNamespace, clinicID.String(), permissionMember, found.ID)
	if err != nil {
		return identity.Identity{}, fmt.Errorf("check recipient's membership: %w", err)
	}
	if member {
		return identity.Identity{}, &InvalidError{Field: field, Message: "is a member of this clinic, whose role decides what they see: share with someone outside it"}
	}
	return found, nil
}

const uniqueViolation = "23505"

// Share grants the recipient of in read access to the clinical records of
// one pet of clinicID until in.ExpiresAt, at most MaxReferralLifetime
// ahead. The recipient must be an active staff login outside the clinic.
//
// The referral, its entry in the sweeper's index, the audit event and the
// outbox row of the relationship Pet:<petID>#referred_vets@<recipient>
// commit together. The relationship reaches Keto after the commit, or
// through the outbox's reconciler if that write fails.
func (s *Referrals) Share(ctx context.Context, clinicID, petID uuid.UUID, actor Actor, in NewReferral) (Referral, error) {
	now := s.now()
	to, err := s.validate(ctx, clinicID, actor, in, now)
	if err != nil {
		return Referral{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Referral{}, fmt.Errorf("generate referral id: %w", err)
	}
	referral := Referral{
		ID: id, ClinicID: clinicID, PetID: petID, VetID: to.ID, VetEmail: identity.NormaliseEmail(to.Email),
		GrantedBy: actor.IdentityID, GrantedAt: now, ExpiresAt: in.ExpiresAt,
	}

	err = s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		_, err := tx.Exec(ctx, `INSERT INTO referrals (tenant_id, id, pet_id, vet_id, vet_email, granted_by, granted_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			clinicID, id, petID, to.ID, referral.VetEmail, actor.IdentityID, referral.GrantedAt, referral.ExpiresAt)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation:
			return ErrNotFound
		case errors.As(err, &pgErr) && pgErr.Code == uniqueViolation:
			return ErrReferralExists
		case err != nil:
			return fmt.Errorf("insert referral: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO referral_expiries (referral_id, clinic_id, expires_at) VALUES ($1, $2, $3)`,
			id, clinicID, referral.ExpiresAt); err != nil {
			return fmt.Errorf("insert referral expiry: %w", err)
		}
		changes.Write(referralRelationship(petID, to.ID))
		return audit.Append(ctx, tx, event(ActionReferralGranted, actor, clinicID, to.ID, referral.GrantedAt, referralDetail(referral)))
	})
	if err != nil {
		return Referral{}, fmt.Errorf("share records of pet %s in clinic %s: %w", petID, clinicID, err)
	}
	return referral, nil
}

// Revoke ends an open referral of a pet of clinicID at once: the outbox
// deletes the relationship in Keto before the transaction commits, so a
// Keto failure changes nothing and returns identity.ErrPermissionsUnavailable.
func (s *Referrals) Revoke(ctx context.Context, clinicID, petID, referralID uuid.UUID, actor Actor) error {
	err := s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		referral, err := scanReferral(tx.QueryRow(ctx, `SELECT `+referralColumns+` FROM referrals
			WHERE tenant_id = $1 AND id = $2 AND pet_id = $3 FOR UPDATE`, clinicID, referralID, petID))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrReferralNotFound
		}
		if err != nil {
			return fmt.Errorf("select referral: %w", err)
		}
		if referral.EndReason != "" {
			return ErrReferralEnded
		}

		now := s.now()
		referral.EndedAt, referral.EndReason, referral.EndedBy = now, ReferralRevoked, actor.IdentityID
		if err := end(ctx, tx, changes, referral); err != nil {
			return err
		}
		return audit.Append(ctx, tx, event(ActionReferralRevoked, actor, clinicID, referral.VetID, now, referralDetail(referral)))
	})
	if err != nil {
		return fmt.Errorf("revoke referral %s in clinic %s: %w", referralID, clinicID, err)
	}
	return nil
}

// end records in tx that referral ended for its EndReason, removes it
// from the sweeper's index, and queues the deletion of its relationship.
func end(ctx context.Context, tx pgx.Tx, changes *tenants.Changes, referral Referral) error {
	var endedBy any
	if referral.EndedBy != uuid.Nil {
		endedBy = referral.EndedBy
	}
	if _, err := tx.Exec(ctx, `UPDATE referrals SET ended_at = $3, end_reason = $4, ended_by = $5
		WHERE tenant_id = $1 AND id = $2`,
		referral.ClinicID, referral.ID, referral.EndedAt, string(referral.EndReason), endedBy); err != nil {
		return fmt.Errorf("end referral: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM referral_expiries WHERE referral_id = $1`, referral.ID); err != nil {
		return fmt.Errorf("delete referral expiry: %w", err)
	}
	changes.Delete(referralRelationship(referral.PetID, referral.VetID))
	return nil
}

// List returns every referral of a pet of clinicID, open and ended, newest
// first.
func (s *Referrals) List(ctx context.Context, clinicID, petID uuid.UUID) ([]Referral, error) {
	var found []Referral
	err := s.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pets WHERE tenant_id = $1 AND id = $2)`, clinicID, petID).Scan(&exists); err != nil {
			return fmt.Errorf("select pet: %w", err)
		}
		if !exists {
			return ErrNotFound
		}
		rows, err := tx.Query(ctx, `SELECT `+referralColumns+` FROM referrals
			WHERE tenant_id = $1 AND pet_id = $2 ORDER BY granted_at DESC, id DESC`, clinicID, petID)
		if err != nil {
			return fmt.Errorf("select referrals: %w", err)
		}
		found, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Referral, error) { return scanReferral(row) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list referrals of pet %s in clinic %s: %w", petID, clinicID, err)
	}
	return found, nil
}

// referralDetail is the audit detail of a referral: ids and times, never
// the recipient's email.
func referralDetail(r Referral) map[string]string {
	return map[string]string{
		"referral_id": r.ID.String(),
		"pet_id":      r.PetID.String(),
		"expires_at":  r.ExpiresAt.UTC().Format(time.RFC3339),
	}
}

const referralColumns = `id, tenant_id, pet_id, vet_id, vet_email, granted_by, granted_at, expires_at, ended_at, end_reason, ended_by`

func scanReferral(row pgx.Row) (Referral, error) {
	var r Referral
	var endedAt *time.Time
	var reason *string
	var endedBy *uuid.UUID
	err := row.Scan(&r.ID, &r.ClinicID, &r.PetID, &r.VetID, &r.VetEmail, &r.GrantedBy, &r.GrantedAt, &r.ExpiresAt, &endedAt, &reason, &endedBy)
	if endedAt != nil {
		r.EndedAt = *endedAt
	}
	if reason != nil {
		r.EndReason = ReferralStatus(*reason)
	}
	if endedBy != nil {
		r.EndedBy = *endedBy
	}
	return r, err
}
