package tenants_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"vetvault/tenants/tenanttest"
)

// TestCatalogRuntimeRole checks, connected as the runtime role, the
// properties row-level security depends on: the role cannot bypass it, owns
// nothing, and every table with a tenant_id column forces a policy and leads
// its keys with tenant_id.
func TestCatalogRuntimeRole(t *testing.T) {
	db := tenanttest.New(t)
	ctx := context.Background()
	_, pool := db.OpenApp(t, func(*pgxpool.Config) {})

	var super, bypass bool
	if err := pool.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&super, &bypass); err != nil {
		t.Fatalf("read runtime role: %v", err)
	}
	if super {
		t.Error("runtime role is a superuser, which bypasses row-level security")
	}
	if bypass {
		t.Error("runtime role has BYPASSRLS")
	}

	var owned []string
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema')`)
	if err != nil {
		t.Fatalf("list owned relations: %v", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatalf("scan owned relation: %v", err)
		}
		owned = append(owned, name)
	}
	if len(owned) > 0 {
		t.Errorf("runtime role owns %v; owners bypass row-level security unless it is forced", owned)
	}

	type table struct {
		name                    string
		enabled, forced         bool
		policies                int
		primaryKeyLeadsTenant   bool
		foreignKeysNotLeadingID int
	}
	rows, err = pool.Query(ctx, `
		SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
		       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
		       COALESCE((SELECT i.indkey[0] = a.attnum FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), false),
		       (SELECT count(*) FROM pg_constraint f WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.conkey[1] <> a.attnum)
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
		ORDER BY c.relname`)
	if err != nil {
		t.Fatalf("list tenant tables: %v", err)
	}
	var tables []table
	for rows.Next() {
		var tb table
		if err := rows.Scan(&tb.name, &tb.enabled, &tb.forced, &tb.policies, &tb.primaryKeyLeadsTenant, &tb.foreignKeysNotLeadingID); err != nil {
			t.Fatalf("scan tenant table: %v", err)
		}
		tables = append(tables, tb)
	}
	if len(tables) < 4 {
		t.Fatalf("found %d tables with tenant_id, want at least 4 (clinics, branches, memberships, appointments)", len(tables))
	}
	for _, tb := range tables {
		if !tb.enabled {
			t.Errorf("%s: row-level security is not enabled", tb.name)
		}
		if !tb.forced {
			t.Errorf("%s: row-level security is not forced", tb.name)
		}
		if tb.policies == 0 {
			t.Errorf("%s: no row-level security policy", tb.name)
		}
		if !tb.primaryKeyLeadsTenant {
			t.Errorf("%s: primary key does not lead with tenant_id", tb.name)
		}
		if tb.foreignKeysNotLeadingID > 0 {
			t.Errorf("%s: %d foreign keys do not lead with tenant_id", tb.name, tb.foreignKeysNotLeadingID)
		}
	}
}
