package staff

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/tenants"
)

// Member is a person with one or more roles in a clinic.
type Member struct {
	IdentityID uuid.UUID
	Email      string
	Roles      []identity.Role
	Active     bool
	Since      time.Time
}

// List returns the clinic's members, active and deactivated, by email.
func (s *Service) List(ctx context.Context, clinicID uuid.UUID) ([]Member, error) {
	var members []Member
	err := s.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		// Roles lists built-in roles, clinic-wide or at a branch, once each.
		rows, err := tx.Query(ctx, `SELECT identity_id, max(email),
			COALESCE(array_agg(DISTINCT role ORDER BY role) FILTER (WHERE role IS NOT NULL), '{}'),
			bool_or(active), min(created_at)
			FROM memberships WHERE tenant_id = $1
			GROUP BY identity_id ORDER BY max(email), identity_id`, clinicID)
		if err != nil {
			return fmt.Errorf("select members: %w", err)
		}
		members, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Member, error) {
			var m Member
			var roles []string
			err := row.Scan(&m.IdentityID, &m.Email, &roles, &m.Active, &m.Since)
			for _, role := range roles {
				m.Roles = append(m.Roles, identity.Role(role))
			}
			return m, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list staff of clinic %s: %w", clinicID, err)
	}
	return members, nil
}

// Deactivate ends target's access to clinicID at once while keeping the
// record of their membership. When the clinic was the last one where target
// held a role, their login is deactivated as well and every session of it
// ends: a person who works nowhere any more should not stay signed in.
func (s *Service) Deactivate(ctx context.Context, clinicID uuid.UUID, actor Actor, target uuid.UUID) error {
	return s.endMembership(ctx, clinicID, actor, target, false)
}

// Remove deletes target's memberships of clinicID and ends their access at
// once; the audit trail keeps the history. Like Deactivate, it deactivates a
// login left without any clinic.
func (s *Service) Remove(ctx context.Context, clinicID uuid.UUID, actor Actor, target uuid.UUID) error {
	return s.endMembership(ctx, clinicID, actor, target, true)
}

// endMembership deactivates target's memberships, or deletes them when
// remove is set, with the owner rules, and audits it all in one
// transaction. Every role the target held, clinic-wide, at a branch or
// custom, loses its Keto relationship before the commit.
func (s *Service) endMembership(ctx context.Context, clinicID uuid.UUID, actor Actor, target uuid.UUID, remove bool) error {
	if target == actor.IdentityID {
		return ErrCannotTargetSelf
	}
	change := `UPDATE memberships SET active = false
		WHERE tenant_id = $1 AND identity_id = $2 AND active RETURNING id`
	if remove {
		change = `DELETE FROM memberships WHERE tenant_id = $1 AND identity_id = $2 RETURNING id`
	}

	err := s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		grants, err := s.activeGrants(ctx, tx, clinicID, target)
		if err != nil {
			return err
		}
		if len(grants) == 0 && !remove {
			return ErrMemberNotFound
		}
		if err := s.checkOwnerRules(ctx, tx, clinicID, actor, grants); err != nil {
			return err
		}

		rows, err := tx.Query(ctx, change, clinicID, target)
		if err != nil {
			return fmt.Errorf("end membership: %w", err)
		}
		ended, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("end membership: %w", err)
		}
		if len(ended) == 0 {
			return ErrMemberNotFound
		}

		for _, grant := range grants {
			changes.Delete(grant.Relationship(clinicID))
			event := s.event(identity.ActionRoleRevoked, actor, clinicID, target, grant.AuditDetail())
			if err := audit.Append(ctx, tx, event); err != nil {
				return err
			}
		}
		if remove {
			return audit.Append(ctx, tx, s.event(identity.ActionMemberRemoved, actor, clinicID, target, nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("end membership in clinic %s: %w", clinicID, err)
	}
	return s.deactivateIfClinicless(ctx, actor, target)
}

func (s *Service) activeGrants(ctx context.Context, tx pgx.Tx, clinicID, target uuid.UUID) ([]tenants.Grant, error) {
	rows, err := tx.Query(ctx, `SELECT identity_id, role, branch_id, custom_role_id FROM memberships
		WHERE tenant_id = $1 AND identity_id = $2 AND active`, clinicID, target)
	if err != nil {
		return nil, fmt.Errorf("select roles: %w", err)
	}
	grants, err := pgx.CollectRows(rows, tenants.ScanGrant)
	if err != nil {
		return nil, fmt.Errorf("read roles: %w", err)
	}
	return grants, nil
}

// checkOwnerRules enforces that only an owner may end an owner's membership
// and that a clinic always keeps at least one active owner.
func (s *Service) checkOwnerRules(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID, actor Actor, targetGrants []tenants.Grant) error {
	targetIsOwner := false
	for _, grant := range targetGrants {
		targetIsOwner = targetIsOwner || grant.Role == identity.RoleOwner
	}
	if !targetIsOwner {
		return nil
	}
	owner, err := s.isOwner(ctx, clinicID, actor.IdentityID)
	if err != nil {
		return err
	}
	if !owner {
		return ErrOwnersOnly
	}
	var owners int
	// FOR UPDATE serialises two owners removing each other at the same time.
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM memberships
		WHERE tenant_id = $1 AND role = 'owner' AND active FOR UPDATE) AS active_owners`, clinicID).Scan(&owners); err != nil {
		return fmt.Errorf("count owners: %w", err)
	}
	if owners <= 1 {
		return ErrLastOwner
	}
	return nil
}

// deactivateIfClinicless deactivates target's login and ends its sessions
// when target holds no role, clinic-wide, at a branch or custom, in any
// clinic any more.
func (s *Service) deactivateIfClinicless(ctx context.Context, actor Actor, target uuid.UUID) error {
	remaining, err := s.relationships.ClinicRoles(ctx, target)
	if err != nil {
		return fmt.Errorf("list remaining roles: %w", err)
	}
	if len(remaining) > 0 {
		return s.sessions.Invalidate(ctx, target)
	}
	if err := s.directory.SetActive(ctx, target, false); err != nil {
		return err
	}
	if err := s.directory.RevokeSessions(ctx, target); err != nil {
		return err
	}
	if err := s.sessions.Invalidate(ctx, target); err != nil {
		return err
	}
	event := s.event(identity.ActionIdentityDeactivated, actor, uuid.Nil, target, nil)
	return s.db.InPlatform(ctx, func(tx pgx.Tx) error { return audit.Append(ctx, tx, event) })
}
