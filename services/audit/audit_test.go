package audit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/tenants/tenanttest"
)

func TestRecordAppendsOnly(t *testing.T) {
	db := tenanttest.New(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	store := audit.NewStore(db.App, func() time.Time { return now })
	clinicA, clinicB := uuid.New(), uuid.New()
	for _, clinic := range []uuid.UUID{clinicA, clinicB} {
		err := db.App.InClinic(ctx, clinic, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO clinics (tenant_id, name, created_by) VALUES ($1, 'Audit Clinic', $2)`, clinic, uuid.New())
			return err
		})
		if err != nil {
			t.Fatalf("insert clinic: %v", err)
		}
	}
	actor := uuid.New()

	platform := identity.Event{Action: identity.ActionLoginSucceeded, ActorID: actor, IP: "127.0.0.1", UserAgent: "test", Detail: map[string]string{"method": "password"}}
	if err := store.Record(ctx, platform); err != nil {
		t.Fatalf("record platform event: %v", err)
	}
	clinicEvent := identity.Event{Action: identity.ActionRoleGranted, ActorID: actor, TargetID: uuid.New(), ClinicID: clinicA}
	if err := store.Record(ctx, clinicEvent); err != nil {
		t.Fatalf("record clinic event: %v", err)
	}

	t.Run("platform event stored with its time", func(t *testing.T) {
		var action string
		var at time.Time
		err := db.Owner.QueryRow(ctx, `SELECT action, occurred_at FROM security_events WHERE actor_id = $1`, actor).Scan(&action, &at)
		if err != nil {
			t.Fatalf("read security event: %v", err)
		}
		if action != string(identity.ActionLoginSucceeded) || !at.Equal(now) {
			t.Errorf("security event = %s at %v, want %s at %v", action, at, identity.ActionLoginSucceeded, now)
		}
	})

	t.Run("clinic event visible only to its clinic", func(t *testing.T) {
		for clinic, want := range map[uuid.UUID]int{clinicA: 1, clinicB: 0} {
			var n int
			err := db.App.InClinic(ctx, clinic, func(tx pgx.Tx) error {
				return tx.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n)
			})
			if err != nil {
				t.Fatalf("count audit events: %v", err)
			}
			if n != want {
				t.Errorf("clinic %s sees %d audit events, want %d", clinic, n, want)
			}
		}
	})

	t.Run("runtime role cannot change or delete events", func(t *testing.T) {
		statements := map[uuid.UUID][]string{
			uuid.Nil: {`UPDATE security_events SET action = 'edited'`, `DELETE FROM security_events`, `SELECT count(*) FROM security_events`},
			clinicA:  {`UPDATE audit_events SET action = 'edited'`, `DELETE FROM audit_events`},
		}
		for clinic, sqls := range statements {
			for _, sql := range sqls {
				run := func(tx pgx.Tx) error { _, err := tx.Exec(ctx, sql); return err }
				var err error
				if clinic == uuid.Nil {
					err = db.App.InPlatform(ctx, run)
				} else {
					err = db.App.InClinic(ctx, clinic, run)
				}
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
					t.Errorf("%q as the runtime role: error %v, want permission denied (42501)", sql, err)
				}
			}
		}
	})
}
