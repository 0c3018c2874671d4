package role

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
)

// Catalog returns the built-in roles and the clinic's custom roles, by name.
func (s *Service) Catalog(ctx context.Context, clinicID uuid.UUID) (Catalog, error) {
	catalog := Catalog{BuiltIn: BuiltIns}
	err := s.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT r.id, r.name, r.permissions, r.created_at, r.updated_at,
			(SELECT count(*) FROM memberships m WHERE m.tenant_id = r.tenant_id AND m.custom_role_id = r.id AND m.active)
			FROM clinic_roles r WHERE r.tenant_id = $1 ORDER BY lower(r.name)`, clinicID)
		if err != nil {
			return fmt.Errorf("select custom roles: %w", err)
		}
		catalog.Custom, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Custom, error) {
			var c Custom
			err := row.Scan(&c.ID, &c.Name, &c.Permissions, &c.CreatedAt, &c.UpdatedAt, &c.Members)
			return c, err
		})
		return err
	})
	if err != nil {
		return Catalog{}, fmt.Errorf("list roles of clinic %s: %w", clinicID, err)
	}
	return catalog, nil
}

// Members returns the clinic's members by email, each with the roles they
// hold: clinic-wide, per branch and custom. A deactivated member is listed
// with no roles.
func (s *Service) Members(ctx context.Context, clinicID uuid.UUID) ([]Member, error) {
	var members []Member
	err := s.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT m.identity_id, m.email, m.active, m.role, m.branch_id,
			COALESCE(b.name, ''), m.custom_role_id, COALESCE(r.name, '')
			FROM memberships m
			LEFT JOIN branches b ON b.tenant_id = m.tenant_id AND b.id = m.branch_id
			LEFT JOIN clinic_roles r ON r.tenant_id = m.tenant_id AND r.id = m.custom_role_id
			WHERE m.tenant_id = $1
			ORDER BY min(m.email) OVER (PARTITION BY m.identity_id), m.identity_id, m.role NULLS LAST, b.name NULLS FIRST, r.name`, clinicID)
		if err != nil {
			return fmt.Errorf("select memberships: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var identityID uuid.UUID
			var email, branchName, customName string
			var active bool
			var role *string
			var branchID, customID *uuid.UUID
			if err := rows.Scan(&identityID, &email, &active, &role, &branchID, &branchName, &customID, &customName); err != nil {
				return fmt.Errorf("read membership: %w", err)
			}
			if len(members) == 0 || members[len(members)-1].IdentityID != identityID {
				members = append(members, Member{IdentityID: identityID, Email: email,
					ClinicRoles: []identity.Role{}, BranchRoles: []BranchRole{}, CustomRoles: []CustomRef{}})
			}
			member := &members[len(members)-1]
			if !active {
				continue
			}
			member.Active = true
			switch {
			case customID != nil:
				member.CustomRoles = append(member.CustomRoles, CustomRef{ID: *customID, Name: customName})
			case branchID != nil:
				member.BranchRoles = append(member.BranchRoles, BranchRole{BranchID: *branchID, BranchName: branchName, Role: identity.Role(*role)})
			default:
				member.ClinicRoles = append(member.ClinicRoles, identity.Role(*role))
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list members of clinic %s: %w", clinicID, err)
	}
	return members, nil
}
