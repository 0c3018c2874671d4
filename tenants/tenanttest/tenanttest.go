// Package tenanttest gives each test its own freshly migrated database on
// the real PostgreSQL server that `go tool task test` starts.
package tenanttest

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"vetvault/tenants"
)

// Database is a throwaway database: App connects as the runtime role,
// Owner as the migration owner.
type Database struct {
	Name   string
	AppURL string
	App    *tenants.DB
	Owner  *pgxpool.Pool
}

// The development defaults, the same as the server's.
const (
	defaultAppURL   = "postgres://vetvault_app:dev-only-app@127.0.0.1:5432/vetvault?sslmode=disable"
	defaultOwnerURL = "postgres://vetvault_owner:dev-only-owner@127.0.0.1:5432/vetvault?sslmode=disable"
)

// New creates a database owned by the migration owner, migrates it, and
// drops it when the test ends. It fails the test, rather than skipping it,
// when PostgreSQL is not reachable: run the tests with `go tool task test`,
// which starts PostgreSQL and creates the roles.
func New(t testing.TB) *Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	ownerURL := envOr("VETVAULT_MIGRATION_DATABASE_URL", defaultOwnerURL)
	appURL := envOr("VETVAULT_DATABASE_URL", defaultAppURL)
	name := "vetvault_test_" + strings.ToLower(rand.Text()[:12])

	admin, err := pgx.Connect(ctx, ownerURL)
	if err != nil {
		t.Fatalf("connect as migration owner (start the stack with `go tool task services`): %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, ownerURL)
		if err != nil {
			t.Errorf("connect to drop test database %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		// Closed pools return before the server ends their backends, and the
		// owner may not terminate the runtime role's backends itself, so wait
		// (bounded) for them to go before dropping.
		for range 100 {
			var open int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, name).Scan(&open); err != nil || open == 0 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})

	db := &Database{Name: name, AppURL: withDatabase(t, appURL, name)}
	ownerDBURL := withDatabase(t, ownerURL, name)
	if err := tenants.Migrate(ctx, ownerDBURL); err != nil {
		t.Fatalf("migrate test database: %v", err)
	}
	db.Owner, err = pgxpool.New(ctx, ownerDBURL)
	if err != nil {
		t.Fatalf("open owner pool: %v", err)
	}
	t.Cleanup(db.Owner.Close)
	db.App, err = tenants.Open(ctx, db.AppURL)
	if err != nil {
		t.Fatalf("open app pool: %v", err)
	}
	t.Cleanup(db.App.Close)
	return db
}

// OpenApp opens another runtime-role pool on the test database, configured
// by modify (for example to limit it to one connection).
func (d *Database) OpenApp(t testing.TB, modify func(*pgxpool.Config)) (*tenants.DB, *pgxpool.Pool) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(d.AppURL)
	if err != nil {
		t.Fatalf("parse app URL: %v", err)
	}
	modify(cfg)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open app pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return tenants.NewDB(pool), pool
}

func withDatabase(t testing.TB, raw, name string) string {
	t.Helper()
	parsed, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	parsed.Path = "/" + name
	return parsed.String()
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
