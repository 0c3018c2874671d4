package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/api"
)

// The permission matrix test calls every /v1 operation of the served OpenAPI
// document as each kind of caller and compares every status with the class
// that testdata/permission_matrix.csv expects. docs/permissions.md renders
// the same table for people, and TestPermissionDocsMatchTable keeps it in
// step.

var updatePermissionDocs = flag.Bool("update", false,
	"rewrite the generated tables in docs/permissions.md from "+matrixPath+" and "+rolePermissionsPath)

const (
	matrixPath          = "testdata/permission_matrix.csv"
	rolePermissionsPath = "testdata/role_permissions.csv"
	permissionDocsPath  = "../../docs/permissions.md"
	namespacesPath      = "../../infra/keto/namespaces.keto.ts"
	// matrixDocsCommand regenerates the Markdown table after the CSV changes.
	matrixDocsCommand = "go test ./services/vetvault -run TestPermissionDocsMatchTable -update"
)

// matrixCallers are the caller columns of the table, in order. Each of the
// five built-in roles is a staff member of clinic A with that one role.
// no_role is a staff login of no clinic, other_owner owns clinic B only, and
// operator is a platform operator.
var matrixCallers = []string{"owner", "manager", "veterinarian", "nurse", "receptionist", "no_role", "other_owner", "operator"}

// matrixColumns are the columns before the callers: the operation and the
// access rule it declares. The test compares them with the document, so a
// row cannot go on describing an operation whose rule changed.
var matrixColumns = []string{"operation", "method", "path", "audience", "permission", "object", "recent"}

// The status classes a caller cell may hold besides an exact status code.
const (
	// classSuccess is any 2xx status.
	classSuccess = "2xx"
	// classBadBody is 400 or 422: the caller passed the access check, and the
	// handler rejected the body, because the test has no example body for the
	// operation and sends {}.
	classBadBody = "4xx-body"
)

// matrixRow is one operation of the table.
type matrixRow struct {
	Operation, Method, Path, Audience, Permission, Object string
	// Recent is "yes" for an operation that needs a recent sign-in, else "".
	Recent string
	// Expect maps each caller to its status class.
	Expect map[string]string
}

// readMatrix reads and validates the permission table.
func readMatrix(t testing.TB) []matrixRow {
	t.Helper()
	file, err := os.Open(matrixPath)
	if err != nil {
		t.Fatalf("open permission table: %v", err)
	}
	defer file.Close()
	reader := csv.NewReader(file)
	reader.Comment = '#'
	records, err := reader.ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", matrixPath, err)
	}
	if len(records) == 0 {
		t.Fatalf("%s is empty", matrixPath)
	}
	if want := append(slices.Clone(matrixColumns), matrixCallers...); !slices.Equal(records[0], want) {
		t.Fatalf("%s header is %v, want %v", matrixPath, records[0], want)
	}

	var rows []matrixRow
	seen := map[string]bool{}
	for line, record := range records[1:] {
		row := matrixRow{
			Operation: record[0], Method: record[1], Path: record[2],
			Audience: record[3], Permission: record[4], Object: record[5], Recent: record[6],
			Expect: map[string]string{},
		}
		if seen[row.Operation] {
			t.Errorf("%s row %d: operation %s appears twice", matrixPath, line+1, row.Operation)
		}
		seen[row.Operation] = true
		for i, caller := range matrixCallers {
			class := record[len(matrixColumns)+i]
			if !validClass(class) {
				t.Errorf("%s row %s, caller %s: class %q is invalid: use 2xx, 4xx-body or a 4xx/5xx status code", matrixPath, row.Operation, caller, class)
			}
			row.Expect[caller] = class
		}
		rows = append(rows, row)
	}
	return rows
}

func validClass(class string) bool {
	if class == classSuccess || class == classBadBody {
		return true
	}
	code, err := strconv.Atoi(class)
	return err == nil && code >= 400 && code < 600
}

// classMatches reports whether status falls in class.
func classMatches(class string, status int) bool {
	switch class {
	case classSuccess:
		return status >= 200 && status < 300
	case classBadBody:
		return status == http.StatusBadRequest || status == http.StatusUnprocessableEntity
	default:
		return class == strconv.Itoa(status)
	}
}

// declaredOperation is a /v1 operation of the OpenAPI document with the
// access rule it registers.
type declaredOperation struct {
	ID, Method, Path string
	HasBody          bool
	Access           api.Access
}

// declaredAccess returns each operation's access rule as api.New registers
// it, because the OpenAPI document does not contain the rules.
func declaredAccess() map[string]api.Access {
	registered := api.New(http.NewServeMux(), api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rules := map[string]api.Access{}
	for _, item := range registered.OpenAPI().Paths {
		for _, op := range []*huma.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch} {
			if op == nil {
				continue
			}
			if access, ok := api.AccessOf(op); ok {
				rules[op.OperationID] = access
			}
		}
	}
	return rules
}

// httpMethods are the keys of an OpenAPI path item that name operations.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// documentOperations lists the /v1 operations of an OpenAPI document,
// ordered by path and method.
func documentOperations(t testing.TB, document []byte) []declaredOperation {
	t.Helper()
	var parsed struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(document, &parsed); err != nil {
		t.Fatalf("decode OpenAPI document: %v", err)
	}
	rules := declaredAccess()
	var operations []declaredOperation
	for path, item := range parsed.Paths {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for method, raw := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			var op struct {
				OperationID string          `json:"operationId"`
				RequestBody json.RawMessage `json:"requestBody"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("decode %s %s: %v", strings.ToUpper(method), path, err)
			}
			access, ok := rules[op.OperationID]
			if !ok {
				t.Errorf("%s %s (%s) declares no access rule", strings.ToUpper(method), path, op.OperationID)
			}
			operations = append(operations, declaredOperation{
				ID: op.OperationID, Method: strings.ToUpper(method), Path: path,
				HasBody: len(op.RequestBody) > 0, Access: access,
			})
		}
	}
	if len(operations) == 0 {
		t.Fatal("the OpenAPI document lists no /v1 operations")
	}
	slices.SortFunc(operations, func(a, b declaredOperation) int {
		return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method)
	})
	return operations
}

func audienceName(a api.Audience) string {
	switch a {
	case api.AudienceStaff:
		return "staff"
	case api.AudienceOperator:
		return "operator"
	case api.AudienceAnyone:
		return "anyone"
	default:
		return "none"
	}
}

// objectName is the Keto namespace an operation's permission is checked on,
// or "" for an operation without a permission.
func objectName(access api.Access) string {
	if access.Permission == "" {
		return ""
	}
	if access.Object == (api.Object{}) {
		return api.ObjectClinic.Namespace
	}
	return access.Object.Namespace
}

func recentName(access api.Access) string {
	if access.Recent {
		return "yes"
	}
	return ""
}

// compareTableWithDocument returns every difference between the table and the
// document's operations: an operation without a row, a row without an
// operation, and a row whose method, path or access rule is out of date.
func compareTableWithDocument(rows []matrixRow, operations []declaredOperation) []string {
	var problems []string
	byID := map[string]matrixRow{}
	for _, row := range rows {
		byID[row.Operation] = row
	}
	inDocument := map[string]bool{}
	for _, op := range operations {
		inDocument[op.ID] = true
		row, ok := byID[op.ID]
		if !ok {
			problems = append(problems, fmt.Sprintf(
				"operation %s (%s %s) is missing from %s: add a row with the expected status class for each caller, "+
					"then run `%s` to show it in docs/permissions.md",
				op.ID, op.Method, op.Path, matrixPath, matrixDocsCommand))
			continue
		}
		got := []string{row.Method, row.Path, row.Audience, row.Permission, row.Object, row.Recent}
		want := []string{op.Method, op.Path, audienceName(op.Access.Audience), op.Access.Permission, objectName(op.Access), recentName(op.Access)}
		if !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf(
				"%s row %s has method, path, audience, permission, object, recent %q, want %q from the registered operation: "+
					"update the row, check its callers, and run `%s`",
				matrixPath, op.ID, got, want, matrixDocsCommand))
		}
	}
	for _, row := range rows {
		if !inDocument[row.Operation] {
			problems = append(problems, fmt.Sprintf(
				"%s has a row for %s, which is not an operation of /openapi.json: delete the row and run `%s`",
				matrixPath, row.Operation, matrixDocsCommand))
		}
	}
	return problems
}

// TestPermissionTableCoversEveryOperation needs no servers, so a new
// operation without a row fails fast even where the stack is not running.
func TestPermissionTableCoversEveryOperation(t *testing.T) {
	rows := readMatrix(t)
	registered := api.New(http.NewServeMux(), api.Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	document, err := json.Marshal(registered.OpenAPI())
	if err != nil {
		t.Fatalf("encode OpenAPI document: %v", err)
	}
	for _, problem := range compareTableWithDocument(rows, documentOperations(t, document)) {
		t.Error(problem)
	}
}

// matrixOrder sorts reads before writes and deletions, so the shared
// fixtures are read before anything changes the clinic. create-clinic runs
// last, because it makes each caller the owner of a new clinic, and no_role
// must hold no role until then.
func matrixOrder(operations []declaredOperation) []declaredOperation {
	phase := func(op declaredOperation) int {
		switch {
		case op.ID == "create-clinic":
			return 3
		case op.Method == http.MethodGet:
			return 0
		case op.Method == http.MethodDelete:
			return 2
		default:
			return 1
		}
	}
	sorted := slices.Clone(operations)
	slices.SortFunc(sorted, func(a, b declaredOperation) int {
		if d := phase(a) - phase(b); d != 0 {
			return d
		}
		return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method)
	})
	return sorted
}

// TestPermissionMatrix calls every /v1 operation as every caller, with the
// callers of one operation in parallel, and compares each status with the
// table. Then it checks the receptionist baseline over the same results.
func TestPermissionMatrix(t *testing.T) {
	rows := readMatrix(t)
	s := newTestServer(t)
	f := newMatrixFixtures(t, s, matrixCallers...)

	operations := documentOperations(t, s.do(http.MethodGet, "/openapi.json", "", nil).body)
	for _, problem := range compareTableWithDocument(rows, operations) {
		t.Error(problem)
	}
	expected := map[string]matrixRow{}
	for _, row := range rows {
		expected[row.Operation] = row
	}

	// statuses maps operation id and caller to the status received.
	statuses := map[string]map[string]int{}
	bodies := map[string]map[string][]byte{}
	checked := 0
	for _, op := range matrixOrder(operations) {
		row, ok := expected[op.ID]
		if !ok {
			continue
		}
		requests, err := f.planAll(op, matrixCallers)
		if err != nil {
			t.Errorf("plan %s: %v", op.ID, err)
			continue
		}
		responses, err := f.sendAll(s.url, requests)
		if err != nil {
			t.Errorf("call %s: %v", op.ID, err)
			continue
		}
		statuses[op.ID], bodies[op.ID] = map[string]int{}, map[string][]byte{}
		for i, r := range responses {
			caller := requests[i].caller
			statuses[op.ID][caller], bodies[op.ID][caller] = r.status, r.body
			checked++
			if want := row.Expect[caller]; !classMatches(want, r.status) {
				t.Errorf("%s (%s %s) as %s: status %d, want %s from %s; body %s",
					op.ID, op.Method, op.Path, caller, r.status, want, matrixPath, r.body)
			}
		}
	}
	t.Logf("checked %d operations × %d callers = %d requests", len(statuses), len(matrixCallers), checked)

	t.Run("receptionist baseline", func(t *testing.T) {
		checkReceptionistBaseline(t, f, operations, statuses, bodies)
	})
	t.Run("role permissions match Keto", func(t *testing.T) {
		checkRolePermissionsInKeto(t, f)
	})
}

// The permissions a receptionist must never hold: clinical records,
// invoices, payments and reports. financialOrClinical catches permissions
// added later under names of the same kind.
var (
	receptionistDenied = []string{
		"view_records", "add_vitals", "write_records", "share_records",
		"view_invoices", "create_invoices", "edit_invoices", "view_reports",
	}
	financialOrClinical = regexp.MustCompile(`record|vital|clinical|note|diagnos|prescri|vaccin|invoice|payment|refund|billing|report`)
)

// The permissions that let a receptionist run the schedule and reach pet
// parents: appointments and pet parent contact details, read and write.
var receptionistAllowed = []string{"view_appointments", "book_appointments", "view_contacts", "edit_contacts"}

// checkReceptionistBaseline checks the receptionist's baseline as a rule
// over the operations' declared permissions, so it covers operations added
// later without a new test. A receptionist of clinic A gets 403 from every
// financial or clinical operation and a 2xx from every schedule and contact
// operation. The check also queries Keto for the permissions that no
// operation uses yet.
func checkReceptionistBaseline(t *testing.T, f *matrixFixtures, operations []declaredOperation,
	statuses map[string]map[string]int, bodies map[string]map[string][]byte) {
	denied, allowed := 0, 0
	for _, op := range operations {
		permission := op.Access.Permission
		status, ran := statuses[op.ID]["receptionist"]
		switch {
		case permission == "" || !ran:
		case slices.Contains(receptionistDenied, permission) || financialOrClinical.MatchString(permission):
			denied++
			if status != http.StatusForbidden {
				t.Errorf("%s needs %s: receptionist got status %d, want 403; body %s", op.ID, permission, status, bodies[op.ID]["receptionist"])
			}
		case slices.Contains(receptionistAllowed, permission):
			allowed++
			if status < 200 || status >= 300 {
				t.Errorf("%s needs %s: receptionist got status %d, want 2xx; body %s", op.ID, permission, status, bodies[op.ID]["receptionist"])
			}
		}
	}
	t.Logf("%d financial or clinical operations denied, %d schedule and contact operations allowed", denied, allowed)
	if allowed == 0 {
		t.Error("no operation needs a schedule or contact permission, want at least list-appointments")
	}

	// The appointment list carries the pet parent's phone number.
	var schedule struct {
		Appointments []struct {
			PetParentPhone string `json:"pet_parent_phone"`
		} `json:"appointments"`
	}
	if err := json.Unmarshal(bodies["list-appointments"]["receptionist"], &schedule); err != nil {
		t.Errorf("decode the receptionist's appointment list: %v", err)
	}
	if len(schedule.Appointments) == 0 || schedule.Appointments[0].PetParentPhone == "" {
		t.Errorf("receptionist's appointment list = %s, want appointments with the pet parent's phone", bodies["list-appointments"]["receptionist"])
	}
	if contact, ok := bodies["get-pet-contact"]["receptionist"]; ok {
		var parent struct {
			Phone string `json:"phone"`
		}
		if err := json.Unmarshal(contact, &parent); err != nil || parent.Phone == "" {
			t.Errorf("receptionist's pet contact = %s, want the pet parent's phone", contact)
		}
	}

	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	keto := identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, &http.Client{Timeout: 10 * time.Second})
	receptionist := uuid.MustParse(f.callers["receptionist"].identityID)
	for _, permission := range append(slices.Clone(receptionistDenied), receptionistAllowed...) {
		if permission == "share_records" {
			continue // a permission on a pet, which share-records above covers
		}
		got, err := keto.Check(context.Background(), identity.ClinicNamespace, f.clinic.ID, permission, receptionist)
		if err != nil {
			t.Fatalf("ask Keto for %s: %v", permission, err)
		}
		if want := slices.Contains(receptionistAllowed, permission); got != want {
			t.Errorf("Keto: receptionist holds %s in clinic A = %t, want %t", permission, got, want)
		}
	}
}
