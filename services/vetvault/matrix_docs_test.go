package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
)

// Markers around the generated parts of docs/permissions.md.
const (
	matrixDocsStart = "<!-- operation matrix: generated from services/vetvault/" + matrixPath + " by `" + matrixDocsCommand + "`; edit the CSV, not this table -->"
	matrixDocsEnd   = "<!-- end of operation matrix -->"
	rolesDocsStart  = "<!-- role permissions: generated from services/vetvault/" + rolePermissionsPath + " by `" + matrixDocsCommand + "`; edit the CSV, not this table -->"
	rolesDocsEnd    = "<!-- end of role permissions -->"
)

// callerHeadings are the table headings for people.
var callerHeadings = map[string]string{
	"owner": "owner", "manager": "manager", "veterinarian": "veterinarian", "nurse": "nurse",
	"receptionist": "receptionist", "no_role": "no role", "other_owner": "other clinic's owner", "operator": "operator",
}

// renderMatrix renders the operation table as Markdown.
func renderMatrix(rows []matrixRow) string {
	var out strings.Builder
	out.WriteString("| operation | request | needs |")
	for _, caller := range matrixCallers {
		out.WriteString(" " + callerHeadings[caller] + " |")
	}
	out.WriteString("\n| --- | --- | --- |" + strings.Repeat(" --- |", len(matrixCallers)) + "\n")
	for _, row := range rows {
		fmt.Fprintf(&out, "| `%s` | `%s %s` | %s |", row.Operation, row.Method, row.Path, needs(row))
		for _, caller := range matrixCallers {
			out.WriteString(" " + cellText(row.Expect[caller]) + " |")
		}
		out.WriteString("\n")
	}
	return out.String()
}

func needs(row matrixRow) string {
	if row.Recent == "yes" {
		return requirement(row) + ", recent sign-in"
	}
	return requirement(row)
}

func requirement(row matrixRow) string {
	switch {
	case row.Permission != "" && row.Object != identity.ClinicNamespace:
		return "`" + row.Permission + "` on the " + strings.ToLower(row.Object)
	case row.Permission != "":
		return "`" + row.Permission + "`"
	case row.Audience == "operator":
		return "operator session"
	case row.Audience == "anyone":
		return "any session"
	default:
		return "staff session"
	}
}

func cellText(class string) string {
	switch class {
	case classSuccess:
		return "yes"
	case classBadBody:
		return "yes (422)"
	default:
		return "no (" + class + ")"
	}
}

// builtInRoles are the role columns of the role permission table.
var builtInRoles = []string{"owner", "manager", "veterinarian", "nurse", "receptionist"}

// rolePermission is one Keto permission on a clinic and the built-in roles
// that hold it.
type rolePermission struct {
	Permission, Data string
	Holders          map[string]bool
}

// readRolePermissions reads and validates the role permission table.
func readRolePermissions(t testing.TB) []rolePermission {
	t.Helper()
	file, err := os.Open(rolePermissionsPath)
	if err != nil {
		t.Fatalf("open role permission table: %v", err)
	}
	defer file.Close()
	reader := csv.NewReader(file)
	reader.Comment = '#'
	records, err := reader.ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", rolePermissionsPath, err)
	}
	if want := append([]string{"permission", "data"}, builtInRoles...); len(records) == 0 || !slices.Equal(records[0], want) {
		t.Fatalf("%s header is %v, want %v", rolePermissionsPath, records[:min(1, len(records))], want)
	}
	var rows []rolePermission
	for _, record := range records[1:] {
		row := rolePermission{Permission: record[0], Data: record[1], Holders: map[string]bool{}}
		for i, role := range builtInRoles {
			switch cell := record[2+i]; cell {
			case "yes", "no":
				row.Holders[role] = cell == "yes"
			default:
				t.Errorf("%s row %s, role %s: %q is invalid: use yes or no", rolePermissionsPath, row.Permission, role, cell)
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// renderRolePermissions renders the role permission table as Markdown.
func renderRolePermissions(rows []rolePermission) string {
	var out strings.Builder
	out.WriteString("| data | permission | " + strings.Join(builtInRoles, " | ") + " |\n")
	out.WriteString("| --- | --- |" + strings.Repeat(" --- |", len(builtInRoles)) + "\n")
	for _, row := range rows {
		fmt.Fprintf(&out, "| %s | `%s` |", row.Data, row.Permission)
		for _, role := range builtInRoles {
			cell := "—"
			if row.Holders[role] {
				cell = "yes"
			}
			out.WriteString(" " + cell + " |")
		}
		out.WriteString("\n")
	}
	return out.String()
}

// clinicPermits returns the names of the permits of the Clinic class in the
// OPL file.
func clinicPermits(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(namespacesPath)
	if err != nil {
		t.Fatalf("read Keto namespaces: %v", err)
	}
	text := string(data)
	start := strings.Index(text, "class Clinic implements Namespace")
	if start < 0 {
		t.Fatalf("%s has no Clinic class", namespacesPath)
	}
	text = text[start:]
	if end := strings.Index(text[1:], "\nclass "); end >= 0 {
		text = text[:end+1]
	}
	permits := text[strings.Index(text, "permits = {"):]
	var names []string
	for _, match := range regexp.MustCompile(`(?m)^\s+(\w+): \(ctx: Context\)`).FindAllStringSubmatch(permits, -1) {
		names = append(names, match[1])
	}
	return names
}

// TestRoleTableCoversClinicPermissions fails when the Keto model gains or
// loses a clinic permission that the role permission table does not list.
func TestRoleTableCoversClinicPermissions(t *testing.T) {
	var listed []string
	for _, row := range readRolePermissions(t) {
		listed = append(listed, row.Permission)
	}
	permits := clinicPermits(t)
	if len(permits) < 10 {
		t.Fatalf("found %d permits in the Clinic class of %s, want at least 10: %v", len(permits), namespacesPath, permits)
	}
	for _, permit := range permits {
		if !slices.Contains(listed, permit) {
			t.Errorf("Clinic permission %s of %s is missing from %s: add a row, then run `%s`", permit, namespacesPath, rolePermissionsPath, matrixDocsCommand)
		}
	}
	for _, permission := range listed {
		if !slices.Contains(permits, permission) {
			t.Errorf("%s lists %s, which the Clinic class of %s does not define: delete the row, then run `%s`", rolePermissionsPath, permission, namespacesPath, matrixDocsCommand)
		}
	}
}

// checkRolePermissionsInKeto checks in Keto, for every row of the role
// permission table, whether each staff caller holds the permission in clinic
// A. The built-in roles must match the table, and no_role and other_owner
// must hold nothing.
func checkRolePermissionsInKeto(t *testing.T, f *matrixFixtures) {
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	keto := identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, &http.Client{Timeout: 10 * time.Second})
	for _, row := range readRolePermissions(t) {
		for _, caller := range matrixCallers {
			c, ok := f.callers[caller]
			if !ok || caller == "operator" {
				continue
			}
			got, err := keto.Check(context.Background(), identity.ClinicNamespace, f.clinic.ID, row.Permission, uuid.MustParse(c.identityID))
			if err != nil {
				t.Fatalf("ask Keto for %s: %v", row.Permission, err)
			}
			if want := row.Holders[caller]; got != want {
				t.Errorf("Keto: %s holds %s in clinic A = %t, want %t from %s", caller, row.Permission, got, want, rolePermissionsPath)
			}
		}
	}
}

// TestPermissionDocsMatchTable fails when a generated table in
// docs/permissions.md differs from its CSV. With -update it rewrites them.
func TestPermissionDocsMatchTable(t *testing.T) {
	data, err := os.ReadFile(permissionDocsPath)
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	docs := string(data)
	regions := []struct {
		start, end, content, source string
	}{
		{matrixDocsStart, matrixDocsEnd, renderMatrix(readMatrix(t)), matrixPath},
		{rolesDocsStart, rolesDocsEnd, renderRolePermissions(readRolePermissions(t)), rolePermissionsPath},
	}
	changed := false
	for _, region := range regions {
		start, end := strings.Index(docs, region.start), strings.Index(docs, region.end)
		if start < 0 || end < start {
			t.Fatalf("docs/permissions.md lacks the markers around the table from %s:\n%s\n%s", region.source, region.start, region.end)
		}
		body := start + len(region.start)
		got, want := docs[body:end], "\n\n"+region.content+"\n"
		if got == want {
			continue
		}
		if !*updatePermissionDocs {
			t.Errorf("the table in docs/permissions.md differs from %s: run `%s`\ngot:\n%s\nwant:\n%s", region.source, matrixDocsCommand, got, want)
			continue
		}
		docs, changed = docs[:body]+want+docs[end:], true
	}
	if !changed {
		return
	}
	if err := os.WriteFile(permissionDocsPath, []byte(docs), 0o644); err != nil {
		t.Fatalf("write docs: %v", err)
	}
	t.Log("rewrote the generated tables in docs/permissions.md")
}
