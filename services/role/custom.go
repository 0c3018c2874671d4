package role

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/tenants"
)

// Create defines a custom role in clinicID. Each of its permissions becomes
// a grants_<permission> relationship from the clinic to the role's members.
func (s *Service) Create(ctx context.Context, clinicID uuid.UUID, actor Actor, in Definition) (Custom, error) {
	name, err := normaliseName(in.Name)
	if err != nil {
		return Custom{}, err
	}
	permissions, err := normalisePermissions(in.Permissions)
	if err != nil {
		return Custom{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Custom{}, fmt.Errorf("generate custom role id: %w", err)
	}

	created := Custom{ID: id, Name: name, Permissions: permissions}
	err = s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		err := tx.QueryRow(ctx, `INSERT INTO clinic_roles (tenant_id, id, name, permissions, created_by)
			VALUES ($1, $2, $3, $4, $5) RETURNING created_at, updated_at`,
			clinicID, id, name, permissions, actor.IdentityID).Scan(&created.CreatedAt, &created.UpdatedAt)
		if err := translateRoleWrite(err); err != nil {
			return err
		}
		for _, p := range permissions {
			changes.Write(tenants.CustomRolePermission(clinicID, id, p))
		}
		detail := map[string]string{"custom_role_id": id.String(), "name": name, "permissions": strings.Join(permissions, ",")}
		return audit.Append(ctx, tx, s.event(identity.ActionCustomRoleCreated, actor, clinicID, uuid.Nil, detail))
	})
	if err != nil {
		return Custom{}, fmt.Errorf("create custom role in clinic %s: %w", clinicID, err)
	}
	return created, nil
}

// Update renames a custom role or replaces its permissions. Permissions it
// loses are deleted in Keto before the commit, so they stop working on the
// next request. Permissions it gains are written after the commit.
func (s *Service) Update(ctx context.Context, clinicID uuid.UUID, actor Actor, roleID uuid.UUID, in Edit) (Custom, error) {
	if in.Name == nil && in.Permissions == nil {
		return Custom{}, &InvalidError{Field: "name", Message: "set name, permissions or both"}
	}
	var name string
	var permissions []string
	var err error
	if in.Name != nil {
		if name, err = normaliseName(*in.Name); err != nil {
			return Custom{}, err
		}
	}
	if in.Permissions != nil {
		if permissions, err = normalisePermissions(in.Permissions); err != nil {
			return Custom{}, err
		}
	}

	var updated Custom
	err = s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		current, err := lockCustomRole(ctx, tx, clinicID, roleID)
		if err != nil {
			return err
		}
		if in.Name == nil {
			name = current.Name
		}
		if in.Permissions == nil {
			permissions = current.Permissions
		}
		err = tx.QueryRow(ctx, `UPDATE clinic_roles SET name = $3, permissions = $4, updated_at = now()
			WHERE tenant_id = $1 AND id = $2 RETURNING created_at, updated_at`,
			clinicID, roleID, name, permissions).Scan(&updated.CreatedAt, &updated.UpdatedAt)
		if err := translateRoleWrite(err); err != nil {
			return err
		}

		var added, removed []string
		for _, p := range permissions {
			if !slices.Contains(current.Permissions, p) {
				added = append(added, p)
				changes.Write(tenants.CustomRolePermission(clinicID, roleID, p))
			}
		}
		for _, p := range current.Permissions {
			if !slices.Contains(permissions, p) {
				removed = append(removed, p)
				changes.Delete(tenants.CustomRolePermission(clinicID, roleID, p))
			}
		}
		updated.ID, updated.Name, updated.Permissions, updated.Members = roleID, name, permissions, current.Members
		detail := map[string]string{
			"custom_role_id": roleID.String(), "name": name, "permissions": strings.Join(permissions, ","),
			"added": strings.Join(added, ","), "removed": strings.Join(removed, ","),
		}
		if current.Name != name {
			detail["previous_name"] = current.Name
		}
		return audit.Append(ctx, tx, s.event(identity.ActionCustomRoleUpdated, actor, clinicID, uuid.Nil, detail))
	})
	if err != nil {
		return Custom{}, fmt.Errorf("update custom role %s in clinic %s: %w", roleID, clinicID, err)
	}
	return updated, nil
}

// Delete removes a custom role: its members lose it and the clinic stops
// granting its permissions, both from the next request on. A role that is
// the only role of some member cannot be deleted, because that would remove
// them from the clinic without saying so.
func (s *Service) Delete(ctx context.Context, clinicID uuid.UUID, actor Actor, roleID uuid.UUID) error {
	err := s.outbox.InClinic(ctx, clinicID, func(tx pgx.Tx, changes *tenants.Changes) error {
		current, err := lockCustomRole(ctx, tx, clinicID, roleID)
		if err != nil {
			return err
		}
		var soleHolders int
		err = tx.QueryRow(ctx, `SELECT count(*) FROM memberships m
			WHERE m.tenant_id = $1 AND m.custom_role_id = $2 AND m.active
			  AND NOT EXISTS (SELECT 1 FROM memberships o
			                  WHERE o.tenant_id = m.tenant_id AND o.identity_id = m.identity_id AND o.active AND o.id <> m.id)`,
			clinicID, roleID).Scan(&soleHolders)
		if err != nil {
			return fmt.Errorf("count members holding only this role: %w", err)
		}
		if soleHolders > 0 {
			return ErrOnlyRole
		}

		rows, err := tx.Query(ctx, `DELETE FROM memberships WHERE tenant_id = $1 AND custom_role_id = $2 AND active
			RETURNING identity_id`, clinicID, roleID)
		if err != nil {
			return fmt.Errorf("delete custom role memberships: %w", err)
		}
		members, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("read deleted custom role memberships: %w", err)
		}
		for _, member := range members {
			grant := tenants.Grant{IdentityID: member, CustomRoleID: roleID}
			changes.Delete(grant.Relationship(clinicID))
			if err := audit.Append(ctx, tx, s.event(identity.ActionRoleRevoked, actor, clinicID, member, grant.AuditDetail())); err != nil {
				return err
			}
		}
		// Rows of deactivated members go too. Their relationships were
		// deleted when they were deactivated.
		if _, err := tx.Exec(ctx, `DELETE FROM memberships WHERE tenant_id = $1 AND custom_role_id = $2`, clinicID, roleID); err != nil {
			return fmt.Errorf("delete deactivated custom role memberships: %w", err)
		}
		for _, p := range current.Permissions {
			changes.Delete(tenants.CustomRolePermission(clinicID, roleID, p))
		}
		if _, err := tx.Exec(ctx, `DELETE FROM clinic_roles WHERE tenant_id = $1 AND id = $2`, clinicID, roleID); err != nil {
			return fmt.Errorf("delete custom role: %w", err)
		}
		detail := map[string]string{"custom_role_id": roleID.String(), "name": current.Name, "permissions": strings.Join(current.Permissions, ",")}
		return audit.Append(ctx, tx, s.event(identity.ActionCustomRoleDeleted, actor, clinicID, uuid.Nil, detail))
	})
	if err != nil {
		return fmt.Errorf("delete custom role %s in clinic %s: %w", roleID, clinicID, err)
	}
	return nil
}

// lockCustomRole reads a custom role and locks its row until tx ends, so
// edits, deletion and membership changes of one role run one at a time.
func lockCustomRole(ctx context.Context, tx pgx.Tx, clinicID, roleID uuid.UUID) (Custom, error) {
	role := Custom{ID: roleID}
	err := tx.QueryRow(ctx, `SELECT name, permissions, created_at, updated_at,
		(SELECT count(*) FROM memberships m WHERE m.tenant_id = r.tenant_id AND m.custom_role_id = r.id AND m.active)
		FROM clinic_roles r WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, clinicID, roleID).
		Scan(&role.Name, &role.Permissions, &role.CreatedAt, &role.UpdatedAt, &role.Members)
	if errors.Is(err, pgx.ErrNoRows) {
		return Custom{}, ErrRoleNotFound
	}
	if err != nil {
		return Custom{}, fmt.Errorf("select custom role: %w", err)
	}
	return role, nil
}

// translateRoleWrite maps a duplicate name to ErrNameTaken.
func translateRoleWrite(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == uniqueViolation:
		return ErrNameTaken
	default:
		return fmt.Errorf("write custom role: %w", err)
	}
}
