package role

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/tenants"
)

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// Grant gives target a built-in role in clinicID, for the whole clinic or
// at one branch. Only an owner may grant owner. Target must already be an
// active member: people join a clinic through an invitation, which is also
// why a platform operator, who can never accept one, cannot be granted a
// role. Keto gets the relationship right after the commit.
func (s *Service) Grant(ctx context.Context, clinicID uuid.UUID, actor Actor, target uuid.UUID, in Assignment) error {
	grant, err := in.validate()
	if err != nil {
		return err
	}
	grant.IdentityID = target
	err = s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		if grant.Role == identity.RoleOwner {
			if err := requireOwner(ctx, tx, clinicID, actor.IdentityID); err != nil {
				return err
			}
		}
		return s.addGrant(ctx, tx, changes, clinicID, actor, grant)
	})
	if err != nil {
		return fmt.Errorf("grant %s in clinic %s: %w", grant.Role, clinicID, err)
	}
	return nil
}

// Revoke takes a built-in role from target. Only an owner may revoke owner,
// and never from the last active owner. The relationship is deleted in Keto
// before the commit, so the revocation holds from the next request on.
func (s *Service) Revoke(ctx context.Context, clinicID uuid.UUID, actor Actor, target uuid.UUID, in Assignment) error {
	grant, err := in.validate()
	if err != nil {
		return err
	}
	grant.IdentityID = target
	err = s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		if grant.Role == identity.RoleOwner {
			if err := requireOwner(ctx, tx, clinicID, actor.IdentityID); err != nil {
				return err
			}
			if err := keepAnOwner(ctx, tx, clinicID, target); err != nil {
				return err
			}
		}
		return s.removeGrant(ctx, tx, changes, clinicID, actor, grant)
	})
	if err != nil {
		return fmt.Errorf("revoke %s in clinic %s: %w", grant.Role, clinicID, err)
	}
	return nil
}

// AddMember gives target the custom role roleID, on the same terms as Grant.
func (s *Service) AddMember(ctx context.Context, clinicID uuid.UUID, actor Actor, roleID, target uuid.UUID) error {
	grant := tenants.Grant{IdentityID: target, CustomRoleID: roleID}
	err := s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		if _, err := lockCustomRole(ctx, tx, clinicID, roleID); err != nil {
			return err
		}
		return s.addGrant(ctx, tx, changes, clinicID, actor, grant)
	})
	if err != nil {
		return fmt.Errorf("add member to custom role %s in clinic %s: %w", roleID, clinicID, err)
	}
	return nil
}

// RemoveMember takes the custom role roleID from target, effective from the
// next request on like Revoke.
func (s *Service) RemoveMember(ctx context.Context, clinicID uuid.UUID, actor Actor, roleID, target uuid.UUID) error {
	grant := tenants.Grant{IdentityID: target, CustomRoleID: roleID}
	err := s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		if _, err := lockCustomRole(ctx, tx, clinicID, roleID); err != nil {
			return err
		}
		return s.removeGrant(ctx, tx, changes, clinicID, actor, grant)
	})
	if err != nil {
		return fmt.Errorf("remove member from custom role %s in clinic %s: %w", roleID, clinicID, err)
	}
	return nil
}

// addGrant writes grant as a membership row of an active member, records
// its relationship and audits it.
func (s *Service) addGrant(ctx context.Context, tx pgx.Tx, changes *tenants.Changes, clinicID uuid.UUID, actor Actor, grant tenants.Grant) error {
	var email string
	err := tx.QueryRow(ctx, `SELECT email FROM memberships
		WHERE tenant_id = $1 AND identity_id = $2 AND active LIMIT 1`, clinicID, grant.IdentityID).Scan(&email)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrMemberNotFound
	}
	if err != nil {
		return fmt.Errorf("find member: %w", err)
	}

	// A deactivated row of the same grant is reactivated.
	tag, err := tx.Exec(ctx, `INSERT INTO memberships (tenant_id, identity_id, role, branch_id, custom_role_id, email)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (tenant_id, identity_id, role, branch_id, custom_role_id) DO UPDATE
		SET active = true WHERE NOT memberships.active`,
		clinicID, grant.IdentityID, nullRole(grant.Role), nullID(grant.BranchID), nullID(grant.CustomRoleID), email)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation {
		return &InvalidError{Field: "branch_id", Message: "branch not found in this clinic"}
	}
	if err != nil {
		return fmt.Errorf("insert membership: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrAlreadyGranted
	}

	changes.Write(grant.Relationship(clinicID))
	return audit.Append(ctx, tx, s.event(identity.ActionRoleGranted, actor, clinicID, grant.IdentityID, grant.AuditDetail()))
}

// removeGrant deletes grant's active membership row, records the deletion
// of its relationship and audits it. A member keeps at least one role:
// removing the last one would silently remove them from the clinic.
func (s *Service) removeGrant(ctx context.Context, tx pgx.Tx, changes *tenants.Changes, clinicID uuid.UUID, actor Actor, grant tenants.Grant) error {
	// FOR UPDATE serialises two revocations racing for a member's last role.
	rows, err := tx.Query(ctx, `SELECT identity_id, role, branch_id, custom_role_id FROM memberships
		WHERE tenant_id = $1 AND identity_id = $2 AND active FOR UPDATE`, clinicID, grant.IdentityID)
	if err != nil {
		return fmt.Errorf("select member's roles: %w", err)
	}
	current, err := pgx.CollectRows(rows, tenants.ScanGrant)
	if err != nil {
		return fmt.Errorf("read member's roles: %w", err)
	}
	switch {
	case len(current) == 0:
		return ErrMemberNotFound
	case !slices.Contains(current, grant):
		return ErrGrantNotFound
	case len(current) == 1:
		return ErrOnlyRole
	}

	_, err = tx.Exec(ctx, `DELETE FROM memberships
		WHERE tenant_id = $1 AND identity_id = $2 AND active
		  AND role IS NOT DISTINCT FROM $3 AND branch_id IS NOT DISTINCT FROM $4 AND custom_role_id IS NOT DISTINCT FROM $5`,
		clinicID, grant.IdentityID, nullRole(grant.Role), nullID(grant.BranchID), nullID(grant.CustomRoleID))
	if err != nil {
		return fmt.Errorf("delete membership: %w", err)
	}
	changes.Delete(grant.Relationship(clinicID))
	return audit.Append(ctx, tx, s.event(identity.ActionRoleRevoked, actor, clinicID, grant.IdentityID, grant.AuditDetail()))
}

// requireOwner returns ErrOwnersOnly unless actor is an active owner.
func requireOwner(ctx context.Context, tx pgx.Tx, clinicID, actor uuid.UUID) error {
	var owner bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM memberships
		WHERE tenant_id = $1 AND identity_id = $2 AND role = 'owner' AND active)`, clinicID, actor).Scan(&owner)
	if err != nil {
		return fmt.Errorf("check owner: %w", err)
	}
	if !owner {
		return ErrOwnersOnly
	}
	return nil
}

// keepAnOwner returns ErrLastOwner when target is the clinic's only active
// owner. It locks the owner rows, so two owners revoking each other at the
// same time cannot both succeed.
func keepAnOwner(ctx context.Context, tx pgx.Tx, clinicID, target uuid.UUID) error {
	var owners int
	var targetIsOwner bool
	err := tx.QueryRow(ctx, `SELECT count(*), COALESCE(bool_or(identity_id = $2), false) FROM (
		SELECT identity_id FROM memberships WHERE tenant_id = $1 AND role = 'owner' AND active FOR UPDATE) AS active_owners`,
		clinicID, target).Scan(&owners, &targetIsOwner)
	if err != nil {
		return fmt.Errorf("count owners: %w", err)
	}
	if targetIsOwner && owners <= 1 {
		return ErrLastOwner
	}
	return nil
}

func nullRole(role identity.Role) any {
	if role == "" {
		return nil
	}
	return string(role)
}

func nullID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}
