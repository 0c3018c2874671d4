package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"vetvault/identity"
)

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
	// records with. It is no caller, so sharing changes no caller's access.
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
// request may create. The identity is deleted when the test ends.
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

// matrixParameter matches a {name} path parameter of an OpenAPI path.
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
