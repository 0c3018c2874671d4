package tenants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
)

// AppendEvent writes an audit event inside a clinic transaction, so the
// event commits with the repair it describes. services/audit.Append is one.
type AppendEvent func(ctx context.Context, tx pgx.Tx, event identity.Event) error

// Reconciler keeps Keto in line with the database. For each clinic it
// first retries the outbox rows still pending. It then compares the
// relationships the database implies (active memberships, branch links,
// custom roles' permissions) with those Keto stores on the clinic, its
// branches and its custom roles. It writes the missing ones and deletes the
// extra ones, and audits each repair in the clinic's trail.
//
// Only the relations VetVault derives from these tables are compared. A
// relationship under any other relation (a pet's referral, say) is left
// alone.
type Reconciler struct {
	db     *DB
	outbox *Outbox
	keto   RelationshipStore
	audit  AppendEvent
	now    func() time.Time
	log    *slog.Logger
}

// NewReconciler returns a reconciler that repairs keto from db.
func NewReconciler(db *DB, keto RelationshipStore, audit AppendEvent, now func() time.Time, log *slog.Logger) *Reconciler {
	return &Reconciler{db: db, outbox: NewOutbox(db, keto, log), keto: keto, audit: audit, now: now, log: log}
}

// ReconcileResult counts what one pass did.
type ReconcileResult struct {
	Clinics int // clinics visited
	Skipped int // clinics whose lock another transaction held; the next pass visits them
	Applied int // pending outbox rows applied
	Written int // missing relationships written
	Deleted int // extra relationships deleted
}

func (r *ReconcileResult) add(other ReconcileResult) {
	r.Clinics += other.Clinics
	r.Skipped += other.Skipped
	r.Applied += other.Applied
	r.Written += other.Written
	r.Deleted += other.Deleted
}

// outboxRetention is how long applied and superseded outbox rows are kept.
const outboxRetention = 7 * 24 * time.Hour

// ReconcileOnce makes one pass over every registered clinic. It stops early
// when Keto is unreachable, since every other clinic would fail the same
// way, and returns the errors of the clinics it could not finish.
func (r *Reconciler) ReconcileOnce(ctx context.Context) (ReconcileResult, error) {
	var clinicIDs []uuid.UUID
	err := r.db.InPlatform(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT clinic_id FROM clinic_registry ORDER BY clinic_id`)
		if err != nil {
			return fmt.Errorf("select registered clinics: %w", err)
		}
		clinicIDs, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		return ReconcileResult{}, fmt.Errorf("list clinics to reconcile: %w", err)
	}

	var total ReconcileResult
	var errs []error
	for _, clinicID := range clinicIDs {
		result, err := r.reconcileClinic(ctx, clinicID)
		total.add(result)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile clinic %s: %w", clinicID, err))
		}
		if errors.Is(err, identity.ErrPermissionsUnavailable) || ctx.Err() != nil {
			break
		}
	}
	return total, errors.Join(errs...)
}

// Run reconciles at once and then every interval until ctx ends, logging
// each pass that changed something or failed.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		result, err := r.ReconcileOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.WarnContext(ctx, "relationship reconciliation failed; retrying next interval",
				"err", err, "clinics", result.Clinics, "applied", result.Applied,
				"written", result.Written, "deleted", result.Deleted, "interval", interval)
		case result.Applied+result.Written+result.Deleted > 0:
			r.log.InfoContext(ctx, "relationships reconciled", "clinics", result.Clinics,
				"applied", result.Applied, "written", result.Written, "deleted", result.Deleted)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// reconcileClinic reconciles one clinic in one transaction holding its
// relationship lock. Repairs done before a Keto failure stay audited: the
// failure is returned after the transaction commits.
func (r *Reconciler) reconcileClinic(ctx context.Context, clinicID uuid.UUID) (ReconcileResult, error) {
	result := ReconcileResult{Clinics: 1}
	var failure error
	err := r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		locked, err := tryLockRelationships(ctx, tx, clinicID)
		if err != nil {
			return err
		}
		if !locked {
			result.Skipped = 1
			return nil
		}

		rows, err := tx.Query(ctx, `SELECT `+outboxColumns+` FROM relationship_outbox
			WHERE tenant_id = $1 AND state = 'pending' ORDER BY id`, clinicID)
		if err != nil {
			return fmt.Errorf("select pending outbox rows: %w", err)
		}
		pending, err := pgx.CollectRows(rows, scanOutboxRow)
		if err != nil {
			return fmt.Errorf("read pending outbox rows: %w", err)
		}
		result.Applied, failure, err = r.outbox.applyPending(ctx, tx, pending)
		if err != nil || failure != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM relationship_outbox
			WHERE tenant_id = $1 AND state <> 'pending' AND applied_at < $2`, clinicID, r.now().Add(-outboxRetention)); err != nil {
			return fmt.Errorf("prune outbox: %w", err)
		}

		failure, err = r.repairDrift(ctx, tx, clinicID, &result)
		return err
	})
	if err == nil {
		err = failure
	}
	return result, err
}

// repairDrift compares and repairs the clinic's relationships inside tx.
// Keto failures are returned as failure, database errors as err.
func (r *Reconciler) repairDrift(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID, result *ReconcileResult) (failure, err error) {
	desired, objects, found, err := desiredRelationships(ctx, tx, clinicID)
	if err != nil || !found {
		// NOTE: a clinic row that is gone keeps its relationships in Keto.
		// They grant nothing, because no rows carry the clinic's id. Deleting
		// a clinic should record their deletion in the outbox.
		return nil, err
	}

	actual := map[string]identity.Relationship{}
	for _, object := range objects {
		stored, err := r.keto.Relationships(ctx, object.namespace, object.id)
		if err != nil {
			return err, nil
		}
		for _, rel := range stored {
			if managedRelation(rel) {
				actual[rel.String()] = rel
			}
		}
	}

	for key, rel := range desired {
		if _, ok := actual[key]; ok {
			continue
		}
		if err := r.keto.Write(ctx, rel); err != nil {
			return err, nil
		}
		result.Written++
		if err := r.auditRepair(ctx, tx, clinicID, rel, "written"); err != nil {
			return nil, err
		}
	}
	for key, rel := range actual {
		if _, ok := desired[key]; ok {
			continue
		}
		if err := r.keto.Delete(ctx, rel); err != nil {
			return err, nil
		}
		result.Deleted++
		if err := r.auditRepair(ctx, tx, clinicID, rel, "deleted"); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (r *Reconciler) auditRepair(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID, rel identity.Relationship, change string) error {
	r.log.WarnContext(ctx, "repaired relationship drift", "clinic_id", clinicID, "relationship", rel.String(), "change", change)
	return r.audit(ctx, tx, identity.Event{
		Action:   identity.ActionRelationshipRepaired,
		TargetID: rel.SubjectID,
		ClinicID: clinicID,
		Detail:   map[string]string{"change": change, "relationship": rel.String()},
		At:       r.now(),
	})
}

// ketoObject is one Keto object whose relationships the reconciler compares.
type ketoObject struct {
	namespace, id string
}

// desiredRelationships returns the relationships the database implies for
// clinicID, keyed by their string form, and the objects they sit on. found
// is false when the clinic row does not exist.
func desiredRelationships(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID) (desired map[string]identity.Relationship, objects []ketoObject, found bool, err error) {
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clinics WHERE tenant_id = $1)`, clinicID).Scan(&found); err != nil || !found {
		return nil, nil, false, err
	}
	desired = map[string]identity.Relationship{}
	add := func(rels ...identity.Relationship) {
		for _, rel := range rels {
			desired[rel.String()] = rel
		}
	}
	objects = []ketoObject{{identity.ClinicNamespace, clinicID.String()}}

	rows, err := tx.Query(ctx, `SELECT id FROM branches WHERE tenant_id = $1`, clinicID)
	if err != nil {
		return nil, nil, false, fmt.Errorf("select branches: %w", err)
	}
	branches, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, nil, false, fmt.Errorf("read branches: %w", err)
	}
	for _, branchID := range branches {
		add(BranchLinks(clinicID, branchID)...)
		objects = append(objects, ketoObject{identity.BranchNamespace, branchID.String()})
	}

	rows, err = tx.Query(ctx, `SELECT id, permissions FROM clinic_roles WHERE tenant_id = $1`, clinicID)
	if err != nil {
		return nil, nil, false, fmt.Errorf("select custom roles: %w", err)
	}
	type customRole struct {
		id          uuid.UUID
		permissions []string
	}
	roles, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (customRole, error) {
		var role customRole
		err := row.Scan(&role.id, &role.permissions)
		return role, err
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("read custom roles: %w", err)
	}
	for _, role := range roles {
		for _, permission := range role.permissions {
			add(CustomRolePermission(clinicID, role.id, permission))
		}
		objects = append(objects, ketoObject{identity.ClinicRoleNamespace, role.id.String()})
	}

	grants, err := activeGrants(ctx, tx, clinicID)
	if err != nil {
		return nil, nil, false, err
	}
	for _, grant := range grants {
		add(grant.Relationship(clinicID))
	}
	return desired, objects, true, nil
}

// activeGrants returns every active role of every member of clinicID, read
// in tx.
func activeGrants(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID) ([]Grant, error) {
	rows, err := tx.Query(ctx, `SELECT identity_id, role, branch_id, custom_role_id
		FROM memberships WHERE tenant_id = $1 AND active`, clinicID)
	if err != nil {
		return nil, fmt.Errorf("select memberships: %w", err)
	}
	grants, err := pgx.CollectRows(rows, ScanGrant)
	if err != nil {
		return nil, fmt.Errorf("read memberships: %w", err)
	}
	return grants, nil
}

// ScanGrant reads a Grant from a row of identity_id, role, branch_id and
// custom_role_id, the last three nullable.
func ScanGrant(row pgx.CollectableRow) (Grant, error) {
	var g Grant
	var role *string
	var branchID, customRoleID *uuid.UUID
	if err := row.Scan(&g.IdentityID, &role, &branchID, &customRoleID); err != nil {
		return g, err
	}
	if role != nil {
		g.Role = identity.Role(*role)
	}
	if branchID != nil {
		g.BranchID = *branchID
	}
	if customRoleID != nil {
		g.CustomRoleID = *customRoleID
	}
	return g, nil
}

// managedRelation reports whether the reconciler owns rel's relation: the
// built-in role relations, a clinic's branches and grants_*, a branch's
// clinic and a custom role's members.
func managedRelation(rel identity.Relationship) bool {
	switch rel.Namespace {
	case identity.ClinicNamespace:
		return isRoleRelation(rel.Relation) || rel.Relation == relationBranches || strings.HasPrefix(rel.Relation, grantsPrefix)
	case identity.BranchNamespace:
		return (isRoleRelation(rel.Relation) && rel.Relation != roleRelations[identity.RoleOwner]) || rel.Relation == relationClinic
	case identity.ClinicRoleNamespace:
		return rel.Relation == relationMembers
	}
	return false
}

func isRoleRelation(relation string) bool {
	for _, r := range roleRelations {
		if r == relation {
			return true
		}
	}
	return false
}
