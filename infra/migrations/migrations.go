// Package migrations embeds the SQL migrations of the VetVault database.
//
// The files run in name order through goose as the migration owner role.
// Every table that holds clinic data leads its keys with tenant_id and has
// row-level security enabled and forced, so the runtime role only ever sees
// the rows of the tenant set for its transaction.
package migrations

import "embed"

// FS contains the migration files.
//
//go:embed *.sql
var FS embed.FS
