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

// RelationshipStore is the part of Keto that the outbox and the reconciler
// use. *identity.Permissions implements it.
type RelationshipStore interface {
	Write(ctx context.Context, r identity.Relationship) error
	Delete(ctx context.Context, r identity.Relationship) error
	Relationships(ctx context.Context, namespace, object string) ([]identity.Relationship, error)
}

// Grant is one role a member holds, as one memberships row records it and
// one Keto relationship carries it: a built-in role for the whole clinic, a
// built-in role at one branch, or a custom role.
type Grant struct {
	IdentityID   uuid.UUID
	Role         identity.Role // empty for a custom role
	BranchID     uuid.UUID     // uuid.Nil for the whole clinic
	CustomRoleID uuid.UUID     // uuid.Nil for a built-in role
}

// roleRelations mirrors the relations of the built-in roles on Clinic and
// Branch in infra/keto/namespaces.keto.ts.
var roleRelations = map[identity.Role]string{
	identity.RoleOwner:        "owners",
	identity.RoleManager:      "managers",
	identity.RoleVeterinarian: "veterinarians",
	identity.RoleNurse:        "nurses",
	identity.RoleReceptionist: "receptionists",
}

// The relations VetVault writes besides the role relations.
const (
	relationMembers  = "members"  // ClinicRole: the custom role's members
	relationBranches = "branches" // Clinic: its branches
	relationClinic   = "clinic"   // Branch: its clinic
	grantsPrefix     = "grants_"  // Clinic: grants_<permission>, custom roles that grant it
)

// Relationship returns the Keto relationship that carries g in clinicID.
func (g Grant) Relationship(clinicID uuid.UUID) identity.Relationship {
	switch {
	case g.CustomRoleID != uuid.Nil:
		return identity.Relationship{Namespace: identity.ClinicRoleNamespace, Object: g.CustomRoleID.String(),
			Relation: relationMembers, SubjectID: g.IdentityID}
	case g.BranchID != uuid.Nil:
		return identity.Relationship{Namespace: identity.BranchNamespace, Object: g.BranchID.String(),
			Relation: roleRelations[g.Role], SubjectID: g.IdentityID}
	default:
		return identity.Relationship{Namespace: identity.ClinicNamespace, Object: clinicID.String(),
			Relation: roleRelations[g.Role], SubjectID: g.IdentityID}
	}
}

// AuditDetail describes g for the audit trail: the built-in role and its
// branch, or the custom role's id.
func (g Grant) AuditDetail() map[string]string {
	if g.CustomRoleID != uuid.Nil {
		return map[string]string{"custom_role_id": g.CustomRoleID.String()}
	}
	detail := map[string]string{"role": string(g.Role)}
	if g.BranchID != uuid.Nil {
		detail["branch_id"] = g.BranchID.String()
	}
	return detail
}

// CustomRolePermission returns the relationship through which custom role
// roleID grants permission in clinicID: the role's members become a subject
// of the clinic's grants_<permission> relation.
func CustomRolePermission(clinicID, roleID uuid.UUID, permission string) identity.Relationship {
	return identity.Relationship{
		Namespace:  identity.ClinicNamespace,
		Object:     clinicID.String(),
		Relation:   grantsPrefix + permission,
		SubjectSet: &identity.SubjectSet{Namespace: identity.ClinicRoleNamespace, Object: roleID.String(), Relation: relationMembers},
	}
}

// BranchLinks returns the two relationships that tie branchID to clinicID:
// the clinic lists the branch, so a member of the branch is a member of the
// clinic, and the branch names its clinic, so clinic-wide roles reach the
// branch. Both relations are typed with a class in the OPL (Branch[],
// Clinic[]), which Keto v0.13 stores as a subject set with an empty relation.
func BranchLinks(clinicID, branchID uuid.UUID) []identity.Relationship {
	return []identity.Relationship{
		{Namespace: identity.ClinicNamespace, Object: clinicID.String(), Relation: relationBranches,
			SubjectSet: &identity.SubjectSet{Namespace: identity.BranchNamespace, Object: branchID.String()}},
		{Namespace: identity.BranchNamespace, Object: branchID.String(), Relation: relationClinic,
			SubjectSet: &identity.SubjectSet{Namespace: identity.ClinicNamespace, Object: clinicID.String()}},
	}
}

type operation string

const (
	operationWrite  operation = "write"
	operationDelete operation = "delete"
)

type change struct {
	operation    operation
	relationship identity.Relationship
}

// Changes collects the relationship changes of one clinic transaction, in
// the order they are made.
type Changes struct {
	items []change
}

// Write records that the relationships must exist in Keto.
func (c *Changes) Write(relationships ...identity.Relationship) {
	for _, r := range relationships {
		c.items = append(c.items, change{operation: operationWrite, relationship: r})
	}
}

// Delete records that the relationships must not exist in Keto.
func (c *Changes) Delete(relationships ...identity.Relationship) {
	for _, r := range relationships {
		c.items = append(c.items, change{operation: operationDelete, relationship: r})
	}
}

// Outbox makes relationship changes in Keto follow the database. A change
// records its relationship changes in the relationship_outbox table in the
// same transaction as the rows that justify them, so every committed grant
// or revocation has a record of what Keto must do.
//
// Deletions are applied to Keto before the commit, and their rows commit
// already marked applied. Writes are applied after the commit. Deleting
// first is what makes a revocation take effect on the very next request
// even when Keto fails after the commit. If Keto cannot delete, the
// transaction rolls back and the caller gets ErrPermissionsUnavailable with
// nothing changed. If the commit fails after the deletion, the person has
// lost access that the database still grants, which fails safe, and the
// reconciler writes it back. Writes wait for the commit because a write
// that lands before a failed commit would grant what the database never
// recorded. A write whose apply fails stays pending until the reconciler
// retries it, so a grant can reach Keto up to one reconcile interval late.
//
// Every apply, and the reconciler's work on a clinic, holds a per-clinic
// advisory lock, and a new change supersedes the pending rows of the same
// relationship. So an older change never reaches Keto after a newer one,
// and the reconciler never compares a half-applied change.
type Outbox struct {
	db   *DB
	keto RelationshipStore
	log  *slog.Logger
}

// NewOutbox returns an outbox that applies changes to keto.
func NewOutbox(db *DB, keto RelationshipStore, log *slog.Logger) *Outbox {
	return &Outbox{db: db, keto: keto, log: log}
}

// applyTimeout bounds the apply after a commit, which runs even when the
// request that made the change has been cancelled.
const applyTimeout = 10 * time.Second

// InClinic runs fn in one transaction scoped to clinicID, as DB.InClinic
// does, and carries the relationship changes fn records to Keto as the
// Outbox documentation describes. An error from fn, or from deleting in
// Keto, rolls back everything. A failed apply after the commit is logged
// and left to the reconciler: the change itself succeeded.
func (o *Outbox) InClinic(ctx context.Context, clinicID uuid.UUID, fn func(pgx.Tx, *Changes) error) error {
	return o.run(ctx, clinicID, false, fn)
}

// inNewClinic is InClinic for the transaction that creates clinicID. It
// also applies writes before the commit, because a relationship on a clinic
// that does not exist yet grants nothing. A Keto outage then stores nothing
// and the caller gets ErrPermissionsUnavailable. Writes applied before a
// failed commit are deleted again.
func (o *Outbox) inNewClinic(ctx context.Context, clinicID uuid.UUID, fn func(pgx.Tx, *Changes) error) error {
	return o.run(ctx, clinicID, true, fn)
}

func (o *Outbox) run(ctx context.Context, clinicID uuid.UUID, newClinic bool, fn func(pgx.Tx, *Changes) error) error {
	var later []int64
	var written []identity.Relationship
	err := o.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		changes := &Changes{}
		if err := fn(tx, changes); err != nil {
			return err
		}
		if len(changes.items) == 0 {
			return nil
		}
		if err := lockRelationships(ctx, tx, clinicID); err != nil {
			return err
		}
		ids, err := enqueue(ctx, tx, clinicID, changes.items)
		if err != nil {
			return err
		}
		for i, c := range changes.items {
			if c.operation == operationWrite && !newClinic {
				later = append(later, ids[i])
				continue
			}
			if err := o.applyChange(ctx, c); err != nil {
				return err
			}
			if c.operation == operationWrite {
				written = append(written, c.relationship)
			}
			if err := markApplied(ctx, tx, ids[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		o.undoWrites(ctx, clinicID, written)
		return err
	}
	if len(later) > 0 {
		o.apply(ctx, clinicID, later)
	}
	return nil
}

// lockRelationships takes the clinic's relationship lock until the
// transaction ends.
func lockRelationships(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('relationships/' || $1::text, 0))`, clinicID); err != nil {
		return fmt.Errorf("lock relationships of clinic %s: %w", clinicID, err)
	}
	return nil
}

// tryLockRelationships takes the clinic's relationship lock if no other
// transaction holds it, and reports whether it did.
func tryLockRelationships(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID) (bool, error) {
	var locked bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('relationships/' || $1::text, 0))`, clinicID).Scan(&locked)
	if err != nil {
		return false, fmt.Errorf("lock relationships of clinic %s: %w", clinicID, err)
	}
	return locked, nil
}

// subjectColumns returns the outbox columns of r's subject.
func subjectColumns(r identity.Relationship) (subjectID, namespace, object, relation any) {
	if r.SubjectSet == nil {
		return r.SubjectID, nil, nil, nil
	}
	return nil, r.SubjectSet.Namespace, r.SubjectSet.Object, r.SubjectSet.Relation
}

// enqueue writes the changes to the outbox in tx, marking older pending
// rows for the same relationships superseded, and returns the new rows' ids
// in order.
func enqueue(ctx context.Context, tx pgx.Tx, clinicID uuid.UUID, items []change) ([]int64, error) {
	ids := make([]int64, 0, len(items))
	for _, c := range items {
		r := c.relationship
		subjectID, subjectNamespace, subjectObject, subjectRelation := subjectColumns(r)
		_, err := tx.Exec(ctx, `UPDATE relationship_outbox SET state = 'superseded', applied_at = now()
			WHERE tenant_id = $1 AND state = 'pending'
			  AND namespace = $2 AND object = $3 AND relation = $4
			  AND subject_id IS NOT DISTINCT FROM $5
			  AND subject_namespace IS NOT DISTINCT FROM $6
			  AND subject_object IS NOT DISTINCT FROM $7
			  AND subject_relation IS NOT DISTINCT FROM $8`,
			clinicID, r.Namespace, r.Object, r.Relation, subjectID, subjectNamespace, subjectObject, subjectRelation)
		if err != nil {
			return nil, fmt.Errorf("supersede pending changes of %s: %w", r, err)
		}
		var id int64
		err = tx.QueryRow(ctx, `INSERT INTO relationship_outbox
			(tenant_id, operation, namespace, object, relation, subject_id, subject_namespace, subject_object, subject_relation)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
			clinicID, string(c.operation), r.Namespace, r.Object, r.Relation,
			subjectID, subjectNamespace, subjectObject, subjectRelation).Scan(&id)
		if err != nil {
			return nil, fmt.Errorf("record %s of %s in the outbox: %w", c.operation, r, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (o *Outbox) applyChange(ctx context.Context, c change) error {
	if c.operation == operationDelete {
		return o.keto.Delete(ctx, c.relationship)
	}
	return o.keto.Write(ctx, c.relationship)
}

// apply applies the outbox rows ids of clinicID that are still pending, in
// order, and marks them applied. It stops at the first failure, which it
// records on the row and logs. The reconciler retries from there.
func (o *Outbox) apply(ctx context.Context, clinicID uuid.UUID, ids []int64) {
	// The request may already be cancelled (the client went away), but the
	// change is committed and Keto should follow it now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()

	var failure error
	err := o.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		if err := lockRelationships(ctx, tx, clinicID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+outboxColumns+` FROM relationship_outbox
			WHERE tenant_id = $1 AND id = ANY($2) AND state = 'pending' ORDER BY id`, clinicID, ids)
		if err != nil {
			return fmt.Errorf("select outbox rows: %w", err)
		}
		pending, err := pgx.CollectRows(rows, scanOutboxRow)
		if err != nil {
			return fmt.Errorf("read outbox rows: %w", err)
		}
		_, failure, err = o.applyPending(ctx, tx, pending)
		return err
	})
	if err == nil {
		err = failure
	}
	if err != nil {
		o.log.WarnContext(ctx, "relationship change not applied to Keto yet; the reconciler retries it",
			"clinic_id", clinicID, "err", err)
	}
}

const outboxColumns = `id, operation, namespace, object, relation, subject_id, subject_namespace, subject_object, subject_relation`

type outboxRow struct {
	id     int64
	change change
}

func scanOutboxRow(row pgx.CollectableRow) (outboxRow, error) {
	var out outboxRow
	var op string
	var subjectID *uuid.UUID
	var subjectNamespace, subjectObject, subjectRelation *string
	r := &out.change.relationship
	if err := row.Scan(&out.id, &op, &r.Namespace, &r.Object, &r.Relation,
		&subjectID, &subjectNamespace, &subjectObject, &subjectRelation); err != nil {
		return out, err
	}
	out.change.operation = operation(op)
	if subjectID != nil {
		r.SubjectID = *subjectID
	} else {
		r.SubjectSet = &identity.SubjectSet{Namespace: deref(subjectNamespace), Object: deref(subjectObject), Relation: deref(subjectRelation)}
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// maxErrorLength matches the last_error column's check.
const maxErrorLength = 1000

// applyPending applies rows in order inside tx, which must hold the
// clinic's relationship lock, and marks each applied. At the first Keto
// failure it records the attempt on that row and returns the failure
// separately from database errors, because the recorded attempts must
// still commit.
func (o *Outbox) applyPending(ctx context.Context, tx pgx.Tx, rows []outboxRow) (applied int, failure, err error) {
	for _, row := range rows {
		if failure = o.applyChange(ctx, row.change); failure != nil {
			message := failure.Error()
			if len(message) > maxErrorLength {
				message = strings.ToValidUTF8(message[:maxErrorLength], "")
			}
			if _, err := tx.Exec(ctx, `UPDATE relationship_outbox SET attempts = attempts + 1, last_error = $2
				WHERE id = $1`, row.id, message); err != nil {
				return applied, failure, fmt.Errorf("record failed attempt on outbox row %d: %w", row.id, err)
			}
			return applied, failure, nil
		}
		if err := markApplied(ctx, tx, row.id); err != nil {
			return applied, nil, err
		}
		applied++
	}
	return applied, nil, nil
}

func markApplied(ctx context.Context, tx pgx.Tx, id int64) error {
	_, err := tx.Exec(ctx, `UPDATE relationship_outbox SET state = 'applied', applied_at = now(), attempts = attempts + 1
		WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("mark outbox row %d applied: %w", id, err)
	}
	return nil
}

// undoWrites deletes relationships written before a commit that failed.
// Nothing in the database refers to them, so the reconciler would not.
func (o *Outbox) undoWrites(ctx context.Context, clinicID uuid.UUID, written []identity.Relationship) {
	if len(written) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	var errs []error
	for _, r := range written {
		errs = append(errs, o.keto.Delete(ctx, r))
	}
	if err := errors.Join(errs...); err != nil {
		// NOTE: a relationship left here points at a clinic that was never
		// committed, so it grants nothing. A sweep of Keto for objects
		// missing from the database would remove it.
		o.log.ErrorContext(ctx, "delete relationships of an uncommitted clinic failed", "clinic_id", clinicID, "err", err)
	}
}
