// Package tenants treats each clinic as a tenant: it creates clinics and
// offers the only way to reach clinic tables, a transaction whose
// row-level security tenant is set before any statement runs.
package tenants

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoTenant is returned when a clinic transaction is requested without a
// clinic id. Running unscoped would read nothing under row-level security,
// so the mistake is reported instead of silently returning empty results.
var ErrNoTenant = errors.New("no clinic id for the tenant transaction")

// DB is the runtime database handle. It connects as the application role,
// which neither owns the tables nor bypasses row-level security.
type DB struct {
	pool *pgxpool.Pool
}

// Open connects a pool to databaseURL and checks that the server responds.
func Open(ctx context.Context, databaseURL string) (*DB, error) {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return &DB{pool: pool}, nil
}

// NewDB wraps an existing pool, which must connect as the application role.
func NewDB(pool *pgxpool.Pool) *DB {
	return &DB{pool: pool}
}

// Close closes the pool.
func (db *DB) Close() {
	db.pool.Close()
}

// Ping reports whether the database responds.
func (db *DB) Ping(ctx context.Context) error {
	return db.pool.Ping(ctx)
}

// InClinic runs fn in one transaction scoped to clinicID and commits it when
// fn returns nil. The tenant is set with set_config(…, true), which is local
// to the transaction, so a pooled connection carries nothing to its next
// user. Any error from fn rolls back everything fn wrote.
func (db *DB) InClinic(ctx context.Context, clinicID uuid.UUID, fn func(pgx.Tx) error) error {
	if clinicID == uuid.Nil {
		return ErrNoTenant
	}

	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin clinic transaction: %w", err)
	}
	// Rollback after a successful Commit is a no-op.
	defer func() { _ = tx.Rollback(ctx) }()

	if _, err := tx.Exec(ctx, "SELECT set_config('app.tenant_id', $1, true)", clinicID.String()); err != nil {
		return fmt.Errorf("set tenant for clinic %s: %w", clinicID, err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit clinic transaction: %w", err)
	}
	return nil
}

// InPlatform runs fn in one transaction with no tenant set, for tables that
// hold no clinic data (platform security events, operator records). Clinic
// tables show no rows and accept no writes there, because row-level security
// compares their tenant_id with an unset tenant.
func (db *DB) InPlatform(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin platform transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit platform transaction: %w", err)
	}
	return nil
}
