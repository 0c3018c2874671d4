package tenants_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"vetvault/tenants"
	"vetvault/tenants/tenanttest"
)

// insertClinic writes a clinic with one branch and one appointment as the
// runtime role, inside the clinic's own tenant.
func insertClinic(t *testing.T, db *tenants.DB, clinicID uuid.UUID) {
	t.Helper()
	branchID := uuid.New()
	err := db.InClinic(context.Background(), clinicID, func(tx pgx.Tx) error {
		ctx := context.Background()
		if _, err := tx.Exec(ctx, `INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, 'Test Clinic', $2)`, clinicID, uuid.New()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO branches (tenant_id, id, name) VALUES ($1, $2, 'Main')`, clinicID, branchID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO appointments (tenant_id, id, branch_id, pet_name, species, pet_parent_name,
			pet_parent_phone, starts_at, duration_minutes, reason, created_by)
			VALUES ($1, $2, $3, 'Bruno', 'Dog', 'Test Parent', '+919800000001', now(), 20, 'Check-up', $4)`,
			clinicID, uuid.New(), branchID, uuid.New())
		return err
	})
	if err != nil {
		t.Fatalf("insert clinic %s: %v", clinicID, err)
	}
}

func countRows(t *testing.T, db *tenants.DB, clinicID uuid.UUID, table string) int {
	t.Helper()
	var n int
	err := db.InClinic(context.Background(), clinicID, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n)
	})
	if err != nil {
		t.Fatalf("count %s in clinic %s: %v", table, clinicID, err)
	}
	return n
}

// TestInClinicOnePooledConnection runs every case on a pool of one
// connection, so each step reuses the connection the previous tenant used.
func TestInClinicOnePooledConnection(t *testing.T) {
	db := tenanttest.New(t)
	scoped, pool := db.OpenApp(t, func(cfg *pgxpool.Config) { cfg.MaxConns = 1 })
	ctx := context.Background()
	clinicA, clinicB := uuid.New(), uuid.New()
	insertClinic(t, scoped, clinicA)

	t.Run("clinic A sees its own rows", func(t *testing.T) {
		for _, table := range []string{"clinics", "branches", "appointments"} {
			if got := countRows(t, scoped, clinicA, table); got != 1 {
				t.Errorf("clinic A sees %d rows of %s, want 1", got, table)
			}
		}
	})

	t.Run("clinic B reads nothing of A", func(t *testing.T) {
		for _, table := range []string{"clinics", "branches", "memberships", "appointments"} {
			if got := countRows(t, scoped, clinicB, table); got != 0 {
				t.Errorf("clinic B sees %d rows of %s, want 0", got, table)
			}
		}
	})

	t.Run("tenant setting does not outlive the transaction", func(t *testing.T) {
		var setting string
		if err := pool.QueryRow(ctx, `SELECT COALESCE(current_setting('app.tenant_id', true), '')`).Scan(&setting); err != nil {
			t.Fatalf("read setting: %v", err)
		}
		if setting != "" {
			t.Errorf("app.tenant_id after the transaction = %q, want empty", setting)
		}
	})

	t.Run("no tenant reads nothing", func(t *testing.T) {
		for _, table := range []string{"clinics", "branches", "appointments"} {
			var n int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatalf("count %s: %v", table, err)
			}
			if n != 0 {
				t.Errorf("without a tenant, %s shows %d rows, want 0", table, n)
			}
		}
	})

	t.Run("no tenant cannot write", func(t *testing.T) {
		_, err := pool.Exec(ctx, `INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, 'Sneaky', $2)`, uuid.New(), uuid.New())
		assertRLSViolation(t, err)
		tag, err := pool.Exec(ctx, `UPDATE clinics SET name = 'Renamed'`)
		if err != nil {
			t.Fatalf("update without tenant: %v", err)
		}
		if tag.RowsAffected() != 0 {
			t.Errorf("update without tenant changed %d rows, want 0", tag.RowsAffected())
		}
	})

	t.Run("clinic B cannot write into A", func(t *testing.T) {
		err := scoped.InClinic(ctx, clinicB, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, 'Forged', $2)`, clinicA, uuid.New())
			return err
		})
		assertRLSViolation(t, err)

		var changed int64
		err = scoped.InClinic(ctx, clinicB, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `UPDATE appointments SET reason = 'Changed' WHERE tenant_id = $1`, clinicA)
			changed = tag.RowsAffected()
			return err
		})
		if err != nil {
			t.Fatalf("update as clinic B: %v", err)
		}
		if changed != 0 {
			t.Errorf("clinic B updated %d of clinic A's appointments, want 0", changed)
		}
	})

	t.Run("error in fn rolls back every write", func(t *testing.T) {
		clinicC := uuid.New()
		failure := errors.New("stop here")
		err := scoped.InClinic(ctx, clinicC, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, 'Half', $2)`, clinicC, uuid.New()); err != nil {
				return err
			}
			return failure
		})
		if !errors.Is(err, failure) {
			t.Fatalf("InClinic error = %v, want %v", err, failure)
		}
		if got := countRows(t, scoped, clinicC, "clinics"); got != 0 {
			t.Errorf("clinic C has %d clinic rows after a failed transaction, want 0", got)
		}
	})

	t.Run("nil clinic id is rejected", func(t *testing.T) {
		err := scoped.InClinic(ctx, uuid.Nil, func(pgx.Tx) error { return nil })
		if !errors.Is(err, tenants.ErrNoTenant) {
			t.Errorf("InClinic(uuid.Nil) error = %v, want ErrNoTenant", err)
		}
	})
}

func assertRLSViolation(t *testing.T, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Fatalf("error = %v, want a row-level security violation", err)
	}
	if pgErr.Code != "42501" {
		t.Errorf("SQLSTATE = %s, want 42501 (row-level security violation)", pgErr.Code)
	}
}
