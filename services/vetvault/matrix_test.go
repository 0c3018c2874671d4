package main

import (
	"bytes"
	"context"
	"crypto/rand"
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
	"sync"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"vetvault/identity"
	"vetvault/services/api"
)

// The permission matrix test calls every /v1 operation of the served OpenAPI
// document as each kind of caller and compares every status with the class
// that testdata/permission_matrix.csv expects. docs/permissions.md renders
// the same table for people; TestPermissionDocsMatchTable keeps it in step.

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
// it; the OpenAPI document does not carry the rules.
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

// matrixCaller is one caller column: a signed-in person with an AAL2 session.
type matrixCaller struct {
	name, email, password, secret, token, identityID string
}

// matrixFixtures is clinic A with one staff member per built-in role, the
// other callers, and the clinic A ids that path parameters are filled with.
type matrixFixtures struct {
	t       *testing.T
	s       *testServer
	client  *http.Client
	admin   *identity.Admin
	callers map[string]*matrixCaller
	clinic  clinicBody
	// otherClinic is clinic B, owned by other_owner, when that caller exists.
	otherClinic clinicBody
	// params maps a path parameter name to an id in clinic A: the clinic,
	// its branch, an appointment, a pet, a custom role, and a member who is
	// no caller (the subject), a nurse.
	params map[string]string
	// parentID is the pet parent of the pet in params.
	parentID string
	// recipientID is a staff login of no clinic that referrals share
	// records with; it is no caller, so sharing changes no caller's access.
	recipientID string

	mu sync.Mutex
	// operatorEmails are operators created by matrix requests, deleted from
	// Kratos when the test ends.
	operatorEmails []string
}

// staffRoles maps the caller columns that are built-in roles in clinic A to
// the role the owner invites them with.
var staffRoles = map[string]string{
	"manager": "manager", "veterinarian": "veterinarian", "nurse": "nurse", "receptionist": "receptionist",
}

// newMatrixFixtures signs up the named callers and builds clinic A. The
// owner is always created, because clinic A needs one.
func newMatrixFixtures(t *testing.T, s *testServer, names ...string) *matrixFixtures {
	t.Helper()
	f := &matrixFixtures{
		t: t, s: s, admin: testAdmin(t),
		client:  &http.Client{Timeout: 20 * time.Second},
		callers: map[string]*matrixCaller{},
		params:  map[string]string{},
	}
	t.Cleanup(f.deleteOperators)
	if !slices.Contains(names, "owner") {
		names = append([]string{"owner"}, names...)
	}

	// Staff sign up concurrently while the operator, whose setup needs the
	// test goroutine, is created here.
	var signUps errgroup.Group
	for _, name := range names {
		if name == "operator" {
			continue
		}
		c := &matrixCaller{name: name, email: newEmail("matrix-" + strings.ReplaceAll(name, "_", "-")), password: rand.Text()}
		f.callers[name] = c
		signUps.Go(func() error { return f.signUp(c) })
	}
	signUps.Go(func() error {
		var err error
		f.recipientID, err = f.registerOnly(newEmail("matrix-referral-vet"))
		return err
	})
	if slices.Contains(names, "operator") {
		f.callers["operator"] = f.newOperator()
	}
	if err := signUps.Wait(); err != nil {
		t.Fatalf("sign up matrix callers: %v", err)
	}

	owner := f.callers["owner"]
	f.clinic = s.createClinic(owner.token, "Matrix Clinic A")
	if other, ok := f.callers["other_owner"]; ok {
		f.otherClinic = s.createClinic(other.token, "Matrix Clinic B")
	}
	f.params["clinicID"] = f.clinic.ID
	f.params["branchID"] = f.clinic.Branches[0].ID

	var build errgroup.Group
	for name, role := range staffRoles {
		if c, ok := f.callers[name]; ok {
			build.Go(func() error {
				_, err := f.inviteNew(c.email, role)
				return err
			})
		}
	}
	var subjectID, appointmentID, roleID, petID string
	build.Go(func() error {
		var err error
		subjectID, err = f.inviteNew(newEmail("matrix-subject"), "nurse")
		return err
	})
	build.Go(func() error {
		var booked struct {
			ID string `json:"id"`
		}
		err := f.call(http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/appointments", owner.token, booking(f.clinic.Branches[0].ID), http.StatusCreated, &booked)
		appointmentID = booked.ID
		return err
	})
	build.Go(func() error {
		var err error
		roleID, err = f.newCustomRole()
		return err
	})
	build.Go(func() error {
		var parent struct {
			ID string `json:"id"`
		}
		if err := f.call(http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/pet-parents", owner.token, petParentBody(), http.StatusCreated, &parent); err != nil {
			return err
		}
		f.parentID = parent.ID
		var err error
		petID, err = f.newPet()
		return err
	})
	if err := build.Wait(); err != nil {
		t.Fatalf("build clinic A: %v", err)
	}
	f.params["identityID"] = subjectID
	f.params["appointmentID"] = appointmentID
	f.params["roleID"] = roleID
	f.params["petID"] = petID
	return f
}

// call sends a JSON request to the working server and decodes the response
// into into, which may be nil. A status other than want is an error. It may
// run on any goroutine.
func (f *matrixFixtures) call(method, path, token string, body any, want int, into any) error {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode body of %s %s: %w", method, path, err)
		}
	}
	r, err := f.send(f.s.url, method, path, token, data)
	if err != nil {
		return err
	}
	if r.status != want {
		return fmt.Errorf("%s %s: status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	if into == nil {
		return nil
	}
	if err := json.Unmarshal(r.body, into); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// registerOnly registers a staff login without a second factor and returns
// its identity id.
func (f *matrixFixtures) registerOnly(email string) (string, error) {
	if _, err := f.s.flows.Register(context.Background(), email, rand.Text()); err != nil {
		return "", fmt.Errorf("register %s: %w", email, err)
	}
	found, err := f.admin.FindByEmail(context.Background(), email)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", email, err)
	}
	return found.ID.String(), nil
}

func petParentBody() map[string]string {
	return map[string]string{"name": "Matrix Parent", "phone": "+919812345678"}
}

// newPet registers a pet of the fixture pet parent as the owner.
func (f *matrixFixtures) newPet() (string, error) {
	var created struct {
		ID string `json:"id"`
	}
	err := f.call(http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/pets", f.callers["owner"].token,
		map[string]string{"pet_parent_id": f.parentID, "name": "Mithu", "species": "Dog", "sex": "female"}, http.StatusCreated, &created)
	return created.ID, err
}

// newCustomRole defines a custom role with a unique name as the owner.
func (f *matrixFixtures) newCustomRole() (string, error) {
	var created struct {
		ID string `json:"id"`
	}
	err := f.call(http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/roles", f.callers["owner"].token,
		customRoleBody(), http.StatusCreated, &created)
	return created.ID, err
}

func customRoleBody() map[string]any {
	return map[string]any{
		"name":        "Front desk with billing " + rand.Text()[:6],
		"permissions": []string{"view_appointments", "book_appointments", "view_contacts", "view_invoices"},
	}
}

// signUp registers c, enrols TOTP and reads c's identity id. It may run on
// any goroutine.
func (f *matrixFixtures) signUp(c *matrixCaller) error {
	ctx := context.Background()
	var err error
	if c.token, err = f.s.flows.Register(ctx, c.email, c.password); err != nil {
		return fmt.Errorf("register %s: %w", c.name, err)
	}
	if c.secret, err = f.s.flows.EnrolTOTP(ctx, c.token); err != nil {
		return fmt.Errorf("enrol TOTP for %s: %w", c.name, err)
	}
	r, err := f.send(f.s.url, http.MethodGet, "/v1/me", c.token, nil)
	if err != nil {
		return err
	}
	var me struct {
		IdentityID string `json:"identity_id"`
	}
	if err := json.Unmarshal(r.body, &me); err != nil || me.IdentityID == "" {
		return fmt.Errorf("GET /v1/me as %s: status %d, body %s", c.name, r.status, r.body)
	}
	c.identityID = me.IdentityID
	return nil
}

// newOperator creates a platform operator the way the first one is made:
// the bootstrap command, the emailed code, a password and TOTP.
func (f *matrixFixtures) newOperator() *matrixCaller {
	f.t.Helper()
	person := operatorAccount{email: operatorEmail(f.t, f.admin, "matrix-operator")}
	if printed, err := f.s.bootstrapOperator(person.email); err != nil {
		f.t.Fatalf("vetvault operator create: %v\n%s", err, printed)
	}
	person.link, person.code = operatorWelcome(f.t, person.email)
	f.s.setUpOperator(&person)
	c := &matrixCaller{name: "operator", email: person.email, password: person.password, secret: person.secret}
	c.token = f.s.logInOperator(person)
	found, err := f.admin.FindByEmail(context.Background(), person.email)
	if err != nil {
		f.t.Fatalf("find matrix operator: %v", err)
	}
	c.identityID = found.ID.String()
	return c
}

// newOperatorEmail returns an unused email for an operator that a matrix
// request may create; the identity is deleted when the test ends.
func (f *matrixFixtures) newOperatorEmail() string {
	email := newEmail("matrix-new-operator")
	f.mu.Lock()
	f.operatorEmails = append(f.operatorEmails, email)
	f.mu.Unlock()
	return email
}

func (f *matrixFixtures) deleteOperators() {
	ctx := context.Background()
	for _, email := range f.operatorEmails {
		if found, err := f.admin.FindByEmail(ctx, email); err == nil {
			_ = f.admin.Delete(ctx, found.ID)
		}
	}
}

// inviteNew has the owner invite email to clinic A with role and returns
// the invitee's identity id. It may run on any goroutine.
func (f *matrixFixtures) inviteNew(email, role string) (string, error) {
	body, err := json.Marshal(map[string]string{"email": email, "role": role})
	if err != nil {
		return "", err
	}
	r, err := f.send(f.s.url, http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/invitations", f.callers["owner"].token, body)
	if err != nil {
		return "", err
	}
	if r.status != http.StatusCreated {
		return "", fmt.Errorf("invite %s as %s: status %d, body %s", email, role, r.status, r.body)
	}
	var sent invitationBody
	if err := json.Unmarshal(r.body, &sent); err != nil {
		return "", fmt.Errorf("decode invitation: %w", err)
	}
	return sent.IdentityID, nil
}

// send makes one request to the server at baseURL. Unlike testServer.do it
// returns its error, so it may run on any goroutine.
func (f *matrixFixtures) send(baseURL, method, path, token string, body []byte) (response, error) {
	request, err := http.NewRequest(method, baseURL+path, bytes.NewReader(body))
	if err != nil {
		return response{}, fmt.Errorf("new request %s %s: %w", method, path, err)
	}
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	request.Header.Set("User-Agent", "vetvault-matrix-test")
	resp, err := f.client.Do(request)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("read %s %s: %w", method, path, err)
	}
	return response{status: resp.StatusCode, body: data, header: resp.Header}, nil
}

// matrixSpec says how the matrix calls one operation beyond filling its path
// from the clinic A fixtures.
type matrixSpec struct {
	// body returns a valid request body for caller. An operation with a
	// request body and no example is sent {}, which its callers that pass
	// the access check answer with 4xx-body.
	body func(f *matrixFixtures, caller string) any
	// fresh returns path parameters naming an object made for this caller
	// alone, for an operation that changes or deletes an object: callers do
	// not race for one object, and later operations still find the shared
	// fixtures. It may run on any goroutine.
	fresh func(f *matrixFixtures, caller string) (map[string]string, error)
}

// matrixSpecs are keyed by operation id.
var matrixSpecs = map[string]matrixSpec{
	"create-clinic": {body: func(*matrixFixtures, string) any {
		return map[string]string{"name": "Matrix Created Clinic", "branch_name": "Koramangala"}
	}},
	"book-appointment": {body: func(f *matrixFixtures, _ string) any {
		return booking(f.clinic.Branches[0].ID)
	}},
	"book-branch-appointment": {body: func(f *matrixFixtures, _ string) any {
		body := booking(f.clinic.Branches[0].ID)
		delete(body, "branch_id")
		return body
	}},
	"invite-staff": {body: func(*matrixFixtures, string) any {
		return map[string]string{"email": newEmail("matrix-invitee"), "role": "receptionist"}
	}},
	"deactivate-staff": {fresh: freshMember},
	"remove-staff":     {fresh: freshMember},
	"revoke-my-session": {fresh: func(f *matrixFixtures, caller string) (map[string]string, error) {
		id, err := f.spareSession(caller)
		return map[string]string{"sessionID": id}, err
	}},
	"create-operator": {body: func(f *matrixFixtures, _ string) any {
		return map[string]string{"email": f.newOperatorEmail()}
	}},

	"grant-role": {
		fresh: freshMember,
		body:  func(*matrixFixtures, string) any { return map[string]string{"role": "receptionist"} },
	},
	"revoke-role": {fresh: func(f *matrixFixtures, _ string) (map[string]string, error) {
		// A member's only role cannot be revoked, so the target holds two.
		params, err := freshMember(f, "")
		if err != nil {
			return nil, err
		}
		err = f.call(http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/members/"+params["identityID"]+"/roles",
			f.callers["owner"].token, map[string]string{"role": "receptionist"}, http.StatusNoContent, nil)
		params["role"] = "receptionist"
		return params, err
	}},
	"create-custom-role": {body: func(*matrixFixtures, string) any { return customRoleBody() }},
	"update-custom-role": {
		fresh: freshCustomRole,
		body: func(*matrixFixtures, string) any {
			return map[string]any{"name": "Renamed desk " + rand.Text()[:6], "permissions": []string{"view_appointments"}}
		},
	},
	"delete-custom-role": {fresh: freshCustomRole},
	"add-custom-role-member": {
		fresh: freshCustomRole,
		body:  func(f *matrixFixtures, _ string) any { return map[string]string{"identity_id": f.params["identityID"]} },
	},
	"remove-custom-role-member": {fresh: func(f *matrixFixtures, _ string) (map[string]string, error) {
		params, err := freshCustomRole(f, "")
		if err != nil {
			return nil, err
		}
		err = f.call(http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/roles/"+params["roleID"]+"/members",
			f.callers["owner"].token, map[string]string{"identity_id": f.params["identityID"]}, http.StatusNoContent, nil)
		params["identityID"] = f.params["identityID"]
		return params, err
	}},

	"create-pet-parent": {body: func(*matrixFixtures, string) any { return petParentBody() }},
	"create-pet": {body: func(f *matrixFixtures, _ string) any {
		return map[string]string{"pet_parent_id": f.parentID, "name": "Bruno", "species": "Cat", "sex": "male"}
	}},
	"update-pet": {body: func(*matrixFixtures, string) any { return map[string]string{"breed": "Indie"} }},
	"add-consultation": {body: func(*matrixFixtures, string) any {
		return map[string]string{"notes": "Bright and alert; mild otitis externa.", "diagnosis": "Otitis externa", "prescription": "Ear drops twice daily for 7 days"}
	}},
	"add-vitals": {body: func(*matrixFixtures, string) any {
		return map[string]any{"weight_kg": 12.5, "temperature_c": 38.6, "heart_rate_bpm": 96}
	}},
	"add-treatment-note": {body: func(*matrixFixtures, string) any {
		return map[string]string{"text": "Ears cleaned; first dose of drops given."}
	}},
	"share-records": {body: func(f *matrixFixtures, _ string) any { return referralBody(f.recipientID) }},
	"revoke-referral": {fresh: func(f *matrixFixtures, _ string) (map[string]string, error) {
		// One referral per pet and vet may be open, so each caller's
		// referral is of a pet of its own.
		petID, err := f.newPet()
		if err != nil {
			return nil, err
		}
		var shared struct {
			ID string `json:"id"`
		}
		err = f.call(http.MethodPost, "/v1/clinics/"+f.clinic.ID+"/pets/"+petID+"/referrals",
			f.callers["veterinarian"].token, referralBody(f.recipientID), http.StatusCreated, &shared)
		return map[string]string{"petID": petID, "referralID": shared.ID}, err
	}},
}

// freshMember invites a new nurse to clinic A for one caller to change or
// remove.
func freshMember(f *matrixFixtures, _ string) (map[string]string, error) {
	id, err := f.inviteNew(newEmail("matrix-target"), "nurse")
	return map[string]string{"identityID": id}, err
}

// freshCustomRole defines a custom role for one caller to change or delete.
func freshCustomRole(f *matrixFixtures, _ string) (map[string]string, error) {
	id, err := f.newCustomRole()
	return map[string]string{"roleID": id}, err
}

func referralBody(recipientID string) map[string]string {
	return map[string]string{"identity_id": recipientID, "expires_at": time.Now().Add(7 * 24 * time.Hour).Format(time.RFC3339)}
}

// spareSession signs caller in once more with the password alone and
// returns the id of a session of caller's other than the one the matrix
// uses, for caller to revoke.
func (f *matrixFixtures) spareSession(caller string) (string, error) {
	c := f.callers[caller]
	if _, err := f.s.flows.LogIn(context.Background(), c.email, c.password); err != nil {
		return "", fmt.Errorf("second sign-in for %s: %w", caller, err)
	}
	r, err := f.send(f.s.url, http.MethodGet, "/v1/me/sessions", c.token, nil)
	if err != nil {
		return "", err
	}
	var list struct {
		Sessions []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		return "", fmt.Errorf("list sessions of %s: status %d, body %s", caller, r.status, r.body)
	}
	for _, session := range list.Sessions {
		if !session.Current {
			return session.ID, nil
		}
	}
	return "", fmt.Errorf("%s has no session besides the current one: %s", caller, r.body)
}

// plannedRequest is one operation called as one caller.
type plannedRequest struct {
	caller, method, path string
	body                 []byte
}

var matrixParameter = regexp.MustCompile(`\{([^}]+)\}`)

// plan builds the request that caller sends for op. It first creates the
// caller's own object when the operation's spec has a fresh function.
func (f *matrixFixtures) plan(op declaredOperation, caller string) (plannedRequest, error) {
	spec := matrixSpecs[op.ID]
	params := f.params
	if spec.fresh != nil {
		fresh, err := spec.fresh(f, caller)
		if err != nil {
			return plannedRequest{}, fmt.Errorf("fresh fixture for %s as %s: %w", op.ID, caller, err)
		}
		params = map[string]string{}
		for name, value := range f.params {
			params[name] = value
		}
		for name, value := range fresh {
			params[name] = value
		}
	}

	var missing []string
	path := matrixParameter.ReplaceAllStringFunc(op.Path, func(match string) string {
		name := match[1 : len(match)-1]
		value, ok := params[name]
		if !ok {
			missing = append(missing, name)
		}
		return value
	})
	if len(missing) > 0 {
		return plannedRequest{}, fmt.Errorf("operation %s has path parameters %v without a clinic A fixture: "+
			"create one in newMatrixFixtures and add it to params", op.ID, missing)
	}

	request := plannedRequest{caller: caller, method: op.Method, path: path}
	switch {
	case spec.body != nil:
		data, err := json.Marshal(spec.body(f, caller))
		if err != nil {
			return plannedRequest{}, fmt.Errorf("encode example body of %s: %w", op.ID, err)
		}
		request.body = data
	case op.HasBody:
		request.body = []byte("{}")
	}
	return request, nil
}

// planAll plans op for each of callers, concurrently.
func (f *matrixFixtures) planAll(op declaredOperation, callers []string) ([]plannedRequest, error) {
	requests := make([]plannedRequest, len(callers))
	var group errgroup.Group
	for i, caller := range callers {
		group.Go(func() error {
			var err error
			requests[i], err = f.plan(op, caller)
			return err
		})
	}
	return requests, group.Wait()
}

// sendAll sends requests to baseURL concurrently and returns the responses
// in the same order.
func (f *matrixFixtures) sendAll(baseURL string, requests []plannedRequest) ([]response, error) {
	responses := make([]response, len(requests))
	var group errgroup.Group
	for i, request := range requests {
		group.Go(func() error {
			var err error
			responses[i], err = f.send(baseURL, request.method, request.path, f.callers[request.caller].token, request.body)
			return err
		})
	}
	return responses, group.Wait()
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
// docs/permissions.md differs from its CSV; with -update it rewrites them.
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
