package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/identity/selfservice"
	"vetvault/services/api"
)

// The operator tests run the server in-process like e2e_test.go, create
// operators with the bootstrap command and the API, and read the mailed codes
// from mailpit's HTTP API.

var (
	operatorMailLink = regexp.MustCompile(`Link: (\S+)`)
	operatorMailCode = regexp.MustCompile(`Code: (\S+)`)
)

// operatorAccount is a platform operator as the tests see them.
type operatorAccount struct {
	id                      uuid.UUID
	email, password, secret string
	link, code              string // from the welcome email
}

// operatorEmail returns an address no identity has yet, and deletes the
// identity the test creates for it, so no usable operator outlives the test.
func operatorEmail(t *testing.T, admin *identity.Admin, prefix string) string {
	t.Helper()
	email := prefix + "-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test"
	t.Cleanup(func() {
		if found, err := admin.FindByEmail(context.Background(), email); err == nil {
			_ = admin.Delete(context.Background(), found.ID)
		}
	})
	return email
}

func testAdmin(t *testing.T) *identity.Admin {
	t.Helper()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return identity.NewAdmin(cfg.KratosAdminURL, &http.Client{Timeout: 10 * time.Second})
}

// bootstrapOperator runs `vetvault operator create` for email against the
// test server's database and returns what it printed.
func (s *testServer) bootstrapOperator(email string, extraArgs ...string) (string, error) {
	s.t.Helper()
	s.t.Setenv("VETVAULT_DATABASE_URL", s.db.AppURL)
	var out bytes.Buffer
	err := runOperator(context.Background(), append([]string{"create", "--email", email}, extraArgs...), &out)
	return out.String(), err
}

// operatorWelcome waits up to 15 s for the welcome email to recipient and
// returns its link and code.
func operatorWelcome(t *testing.T, recipient string) (link, code string) {
	t.Helper()
	query := url.Values{"query": {`to:"` + recipient + `"`}, "limit": {"1"}}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		var found struct {
			Messages []struct {
				ID      string `json:"ID"`
				Subject string `json:"Subject"`
			} `json:"messages"`
		}
		getJSON(t, mailpitURL+"/api/v1/search?"+query.Encode(), &found)
		if len(found.Messages) > 0 {
			if got, want := found.Messages[0].Subject, "Your VetVault operator account"; got != want {
				t.Fatalf("mail subject %q, want %q", got, want)
			}
			var message struct {
				Text string `json:"Text"`
			}
			getJSON(t, mailpitURL+"/api/v1/message/"+found.Messages[0].ID, &message)
			linkMatch := operatorMailLink.FindStringSubmatch(message.Text)
			codeMatch := operatorMailCode.FindStringSubmatch(message.Text)
			if linkMatch == nil || codeMatch == nil {
				t.Fatalf("welcome mail has no link or code:\n%s", message.Text)
			}
			return linkMatch[1], codeMatch[1]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no mail to %s in mailpit within 15 s", recipient)
	return "", ""
}

// setUpOperator follows the welcome email as the new operator would: the
// recovery code in a browser, then a password and TOTP in settings flows.
// It checks on the way that the operator is refused below AAL2.
func (s *testServer) setUpOperator(person *operatorAccount) {
	s.t.Helper()
	ctx := context.Background()
	flowID, err := selfservice.RecoveryFlowID(person.link)
	if err != nil {
		s.t.Fatalf("parse recovery link: %v", err)
	}
	browser, err := selfservice.NewBrowser(s.url+"/.ory", 15*time.Second)
	if err != nil {
		s.t.Fatalf("new browser: %v", err)
	}
	settingsFlow, err := browser.SubmitRecoveryCode(ctx, flowID, person.code)
	if err != nil {
		s.t.Fatalf("submit recovery code: %v", err)
	}
	person.password = rand.Text()
	if err := browser.SetPassword(ctx, settingsFlow, person.password); err != nil {
		s.t.Fatalf("set password: %v", err)
	}

	// Before enrolment, a password sign-in is AAL1 and reaches nothing.
	aal1, err := s.flows.LogIn(ctx, person.email, person.password)
	if err != nil {
		s.t.Fatalf("password login before TOTP: %v", err)
	}
	s.expectSecondFactorRequired("operator without a second factor", aal1)

	if person.secret, err = browser.EnrolTOTP(ctx); err != nil {
		s.t.Fatalf("enrol TOTP: %v", err)
	}
}

// logInOperator signs the operator in with password and TOTP and returns an
// AAL2 session token. A password alone is refused on the way.
func (s *testServer) logInOperator(person operatorAccount) string {
	s.t.Helper()
	ctx := context.Background()
	token, err := s.flows.LogIn(ctx, person.email, person.password)
	if err != nil {
		s.t.Fatalf("operator password login: %v", err)
	}
	s.expectSecondFactorRequired("operator with a password-only session", token)

	// One step ahead, because enrolment used the current step's code.
	token, err = s.flows.CompleteSecondFactor(ctx, token, person.secret, time.Now().Add(30*time.Second))
	if err != nil {
		s.t.Fatalf("operator TOTP login: %v", err)
	}
	return token
}

func (s *testServer) expectSecondFactorRequired(caller, token string) {
	s.t.Helper()
	for _, c := range []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, "/v1/me", nil},
		{http.MethodPost, "/v1/operators", mustJSON(s.t, map[string]string{"email": "nobody-" + strings.ToLower(rand.Text()[:8]) + "@vetvault.test"})},
	} {
		r := s.do(c.method, c.path, token, c.body)
		var p problem
		r.json(s.t, &p)
		if r.status != http.StatusForbidden {
			s.t.Errorf("%s: %s %s: status %d, want 403", caller, c.method, c.path, r.status)
		}
		if !strings.Contains(p.Detail, "second factor") {
			s.t.Errorf("%s: %s %s: detail %q, want it to ask for a second factor", caller, c.method, c.path, p.Detail)
		}
	}
}

func TestOperatorEndToEnd(t *testing.T) {
	s := newTestServer(t)
	admin := testAdmin(t)
	ctx := context.Background()

	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Operator Boundary Clinic")
	booked := s.do(http.MethodPost, "/v1/clinics/"+clinic.ID+"/appointments", owner.token, mustJSON(t, booking(clinic.Branches[0].ID)))
	if booked.status != http.StatusCreated {
		t.Fatalf("book appointment: status %d, body %s", booked.status, booked.body)
	}
	var appointment struct {
		ID string `json:"id"`
	}
	booked.json(t, &appointment)
	var ownerMe struct {
		IdentityID string `json:"identity_id"`
	}
	s.do(http.MethodGet, "/v1/me", owner.token, nil).json(t, &ownerMe)

	// The bootstrap command creates the first operator.
	first := operatorAccount{email: operatorEmail(t, admin, "first-operator")}
	printed, err := s.bootstrapOperator(strings.ToUpper(first.email))
	if err != nil {
		t.Fatalf("vetvault operator create: %v\n%s", err, printed)
	}
	first.link, first.code = operatorWelcome(t, first.email)
	if !strings.Contains(printed, "Link: "+first.link) {
		t.Errorf("command printed %q, want the mailed link %q", printed, first.link)
	}
	if !strings.Contains(printed, "Code: "+first.code) {
		t.Errorf("command printed %q, want the mailed code", printed)
	}
	stored, err := admin.FindByEmail(ctx, first.email)
	if err != nil {
		t.Fatalf("find bootstrapped operator: %v", err)
	}
	if stored.SchemaID != identity.SchemaOperator {
		t.Errorf("bootstrapped identity has schema %q, want %q", stored.SchemaID, identity.SchemaOperator)
	}
	first.id = stored.ID
	if !strings.Contains(printed, first.id.String()) {
		t.Errorf("command printed %q, want the new operator's id %s", printed, first.id)
	}
	events := operatorEvents(t, s, first.id)
	if len(events) != 1 {
		t.Fatalf("%d operator.created events for the bootstrapped operator, want 1: %+v", len(events), events)
	}
	if events[0].actor != nil {
		t.Errorf("bootstrap event actor %s, want none", events[0].actor)
	}
	if events[0].detail != "{}" {
		t.Errorf("bootstrap event detail %s, want {} (the target id is enough)", events[0].detail)
	}

	s.setUpOperator(&first)
	token := s.logInOperator(first)

	t.Run("me shows an operator without clinics", func(t *testing.T) {
		r := s.do(http.MethodGet, "/v1/me", token, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET /v1/me: status %d, body %s", r.status, r.body)
		}
		var me struct {
			IdentityID string            `json:"identity_id"`
			Email      string            `json:"email"`
			AAL        string            `json:"aal"`
			Operator   bool              `json:"operator"`
			Clinics    []json.RawMessage `json:"clinics"`
		}
		r.json(t, &me)
		if !me.Operator {
			t.Errorf("operator = false, want true")
		}
		if len(me.Clinics) != 0 {
			t.Errorf("clinics = %d entries, want none", len(me.Clinics))
		}
		if me.IdentityID != first.id.String() {
			t.Errorf("identity_id = %s, want %s", me.IdentityID, first.id)
		}
		if me.AAL != identity.AAL2 {
			t.Errorf("aal = %q, want aal2", me.AAL)
		}
		if me.Email != first.email {
			t.Errorf("email = %q, want %q", me.Email, first.email)
		}
	})

	t.Run("every staff operation refuses operators", func(t *testing.T) {
		params := map[string]string{
			"clinicID":      clinic.ID,
			"appointmentID": appointment.ID,
			"identityID":    ownerMe.IdentityID,
		}
		operations := staffOperations(t, s)
		t.Logf("%d staff operations in /openapi.json", len(operations))
		if len(operations) < 3 {
			t.Fatalf("found %d staff operations in /openapi.json, want at least 3", len(operations))
		}
		for _, op := range operations {
			for _, clinicID := range []string{clinic.ID, uuid.NewString()} {
				params["clinicID"] = clinicID
				path := op.fill(params)
				r := s.do(op.method, path, token, []byte("{}"))
				if r.status >= 200 && r.status < 300 {
					t.Errorf("%s %s (%s) as operator: status %d, want 403 or 404; body %s", op.method, path, op.id, r.status, r.body)
					continue
				}
				if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
					t.Errorf("%s %s (%s) as operator: status %d, want 403 or 404", op.method, path, op.id, r.status)
				}
			}
		}

		var after appointmentList
		s.do(http.MethodGet, "/v1/clinics/"+clinic.ID+"/appointments", owner.token, nil).json(t, &after)
		if len(after.Appointments) != 1 || after.Appointments[0].ID != appointment.ID {
			t.Errorf("clinic appointments after the operator's requests = %+v, want only %s", after.Appointments, appointment.ID)
		}
		if r := s.do(http.MethodGet, "/v1/clinics/"+clinic.ID, owner.token, nil); r.status != http.StatusOK {
			t.Errorf("owner reads the clinic after the operator's requests: status %d, want 200", r.status)
		}

		var denials int
		err := s.db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM security_events
			WHERE action = 'access.denied' AND actor_id = $1 AND detail->>'reason' = 'audience'`, first.id).Scan(&denials)
		if err != nil {
			t.Fatalf("count denials: %v", err)
		}
		if want := 2 * len(operations); denials != want {
			t.Errorf("%d audited audience denials of the operator, want %d", denials, want)
		}
	})

	t.Run("operator creates another operator", func(t *testing.T) {
		second := operatorAccount{email: operatorEmail(t, admin, "second-operator")}
		r := s.do(http.MethodPost, "/v1/operators", token, mustJSON(t, map[string]string{"email": strings.ToUpper(second.email)}))
		if r.status != http.StatusCreated {
			t.Fatalf("POST /v1/operators: status %d, want 201; body %s", r.status, r.body)
		}
		var created struct {
			ID    string `json:"id"`
			Email string `json:"email"`
		}
		r.json(t, &created)
		if created.Email != second.email {
			t.Errorf("email = %q, want the normalised %q", created.Email, second.email)
		}
		if strings.Contains(string(r.body), "code") {
			t.Errorf("response %s mentions a code; the code goes only to the new operator", r.body)
		}
		found, err := admin.FindByEmail(ctx, second.email)
		if err != nil {
			t.Fatalf("find the new operator: %v", err)
		}
		if found.ID.String() != created.ID {
			t.Errorf("identity found by email %s, want the created %s", found.ID, created.ID)
		}
		if found.SchemaID != identity.SchemaOperator {
			t.Errorf("schema %q, want %q", found.SchemaID, identity.SchemaOperator)
		}
		events := operatorEvents(t, s, found.ID)
		if len(events) != 1 {
			t.Fatalf("%d events for the new operator, want 1: %+v", len(events), events)
		}
		if events[0].actor == nil || *events[0].actor != first.id {
			t.Errorf("event actor %v, want the creating operator %s", events[0].actor, first.id)
		}
		if events[0].ip != "127.0.0.1" {
			t.Errorf("event ip %q, want 127.0.0.1", events[0].ip)
		}
		if events[0].userAgent == "" {
			t.Errorf("event has no user agent, want the client's")
		}

		// The new operator can finish their setup from the email and sign in.
		second.id = found.ID
		second.link, second.code = operatorWelcome(t, second.email)
		s.setUpOperator(&second)
		secondToken := s.logInOperator(second)
		var me struct {
			Operator bool `json:"operator"`
		}
		s.do(http.MethodGet, "/v1/me", secondToken, nil).json(t, &me)
		if !me.Operator {
			t.Errorf("second operator's /v1/me operator = false, want true")
		}
	})

	t.Run("create operator rejects taken and bad emails", func(t *testing.T) {
		before := operatorCreatedCount(t, s)
		tests := []struct {
			name       string
			email      string
			wantStatus int
		}{
			{"staff owner's email", owner.email, http.StatusConflict},
			{"staff owner's email in capitals", strings.ToUpper(owner.email), http.StatusConflict},
			{"operator's own email", first.email, http.StatusConflict},
			{"not an email", "not-an-email", http.StatusUnprocessableEntity},
			{"display name", "Asha Rao <asha-" + strings.ToLower(rand.Text()[:8]) + "@vetvault.test>", http.StatusUnprocessableEntity},
			{"empty", "", http.StatusUnprocessableEntity},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := s.do(http.MethodPost, "/v1/operators", token, mustJSON(t, map[string]string{"email": tt.email}))
				if r.status != tt.wantStatus {
					t.Fatalf("status %d, want %d; body %s", r.status, tt.wantStatus, r.body)
				}
				if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
					t.Errorf("Content-Type %q, want application/problem+json", ct)
				}
				if tt.wantStatus != http.StatusUnprocessableEntity {
					return
				}
				var p problem
				r.json(t, &p)
				located := false
				for _, e := range p.Errors {
					located = located || e.Location == "body.email"
				}
				if !located {
					t.Errorf("problem %s does not name body.email", r.body)
				}
			})
		}
		if after := operatorCreatedCount(t, s); after != before {
			t.Errorf("operator.created events went from %d to %d after rejected requests, want no change", before, after)
		}
		staffMember, err := admin.FindByEmail(ctx, owner.email)
		if err != nil {
			t.Fatalf("find staff owner: %v", err)
		}
		if staffMember.SchemaID != identity.SchemaStaff {
			t.Errorf("staff owner's schema is %q after the attempts, want %q", staffMember.SchemaID, identity.SchemaStaff)
		}
	})

	t.Run("staff owner cannot create operators", func(t *testing.T) {
		email := operatorEmail(t, admin, "by-staff")
		r := s.do(http.MethodPost, "/v1/operators", owner.token, mustJSON(t, map[string]string{"email": email}))
		if r.status != http.StatusForbidden {
			t.Fatalf("status %d, want 403; body %s", r.status, r.body)
		}
		var p problem
		r.json(t, &p)
		if !strings.Contains(p.Detail, "operators") {
			t.Errorf("detail %q, want it to say only operators may do this", p.Detail)
		}
		if _, err := admin.FindByEmail(ctx, email); !errors.Is(err, identity.ErrIdentityNotFound) {
			t.Errorf("find identity after the refused request: error %v, want ErrIdentityNotFound", err)
		}
	})

	t.Run("recovery code works only once", func(t *testing.T) {
		flowID, err := selfservice.RecoveryFlowID(first.link)
		if err != nil {
			t.Fatalf("parse recovery link: %v", err)
		}
		again, err := selfservice.NewBrowser(s.url+"/.ory", 15*time.Second)
		if err != nil {
			t.Fatalf("new browser: %v", err)
		}
		_, err = again.SubmitRecoveryCode(ctx, flowID, first.code)
		if err == nil {
			t.Fatal("second use of the recovery code succeeded, want it rejected")
		}
		// Kratos v1.3.1 words this rejection "The code was already used".
		if !strings.Contains(err.Error(), "already used") {
			t.Errorf("second use rejected with %v, want Kratos to say the code was already used", err)
		}
		if r := s.browseAs(again, "/v1/me"); r.status != http.StatusUnauthorized {
			t.Errorf("GET /v1/me after the rejected code: status %d, want 401", r.status)
		}
	})

	t.Run("expired recovery code fails", func(t *testing.T) {
		late := operatorAccount{email: operatorEmail(t, admin, "late-operator")}
		if printed, err := s.bootstrapOperator(late.email, "--code-lifetime", "1s"); err != nil {
			t.Fatalf("vetvault operator create: %v\n%s", err, printed)
		}
		late.link, late.code = operatorWelcome(t, late.email)
		time.Sleep(2 * time.Second)

		flowID, err := selfservice.RecoveryFlowID(late.link)
		if err != nil {
			t.Fatalf("parse recovery link: %v", err)
		}
		browser, err := selfservice.NewBrowser(s.url+"/.ory", 15*time.Second)
		if err != nil {
			t.Fatalf("new browser: %v", err)
		}
		_, err = browser.SubmitRecoveryCode(ctx, flowID, late.code)
		if err == nil {
			t.Fatal("expired recovery code succeeded, want it rejected")
		}
		// Kratos v1.3.1 sends a client with an expired flow to a new one.
		if !strings.Contains(err.Error(), "status 303") {
			t.Errorf("expired code rejected with %v, want a redirect to a new recovery flow", err)
		}
		if r := s.browseAs(browser, "/v1/me"); r.status != http.StatusUnauthorized {
			t.Errorf("GET /v1/me after the expired code: status %d, want 401", r.status)
		}
	})
}

// browseAs sends a GET with the browser's cookies.
func (s *testServer) browseAs(browser *selfservice.Browser, path string) response {
	s.t.Helper()
	resp, err := browser.HTTP().Get(s.url + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: data, header: resp.Header}
}

// staffOperation is one operation of the served OpenAPI document that
// declares AudienceStaff.
type staffOperation struct {
	id, method, path string
}

// fill replaces the path's {name} parameters with values[name], or with a
// random UUID for a name values lacks.
func (op staffOperation) fill(values map[string]string) string {
	return matrixParameter.ReplaceAllStringFunc(op.path, func(match string) string {
		if value, ok := values[match[1:len(match)-1]]; ok {
			return value
		}
		return uuid.NewString()
	})
}

// staffOperations lists the operations of the server's /openapi.json whose
// declared audience is staff. The document does not carry the audience, so
// it is read from the operations as api.New registers them, matched by
// operation id. An operation without a declared rule fails the test.
func staffOperations(t *testing.T, s *testServer) []staffOperation {
	t.Helper()
	var document struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	s.do(http.MethodGet, "/openapi.json", "", nil).json(t, &document)

	declared := declaredAccess()

	var operations []staffOperation
	for path, methods := range document.Paths {
		for method, op := range methods {
			access, ok := declared[op.OperationID]
			if !ok {
				t.Errorf("%s %s (%s) declares no access rule", strings.ToUpper(method), path, op.OperationID)
				continue
			}
			if access.Audience == api.AudienceStaff {
				operations = append(operations, staffOperation{id: op.OperationID, method: strings.ToUpper(method), path: path})
			}
		}
	}
	return operations
}

type operatorEvent struct {
	actor     *uuid.UUID
	ip        string
	userAgent string
	detail    string
}

// operatorEvents reads, as the migration owner, the operator.created events
// whose target is target.
func operatorEvents(t *testing.T, s *testServer, target uuid.UUID) []operatorEvent {
	t.Helper()
	rows, err := s.db.Owner.Query(context.Background(),
		`SELECT actor_id, ip, user_agent, detail::text FROM security_events
		 WHERE action = $1 AND target_id = $2 ORDER BY id`, string(identity.ActionOperatorCreated), target)
	if err != nil {
		t.Fatalf("query security events: %v", err)
	}
	defer rows.Close()
	var events []operatorEvent
	for rows.Next() {
		var e operatorEvent
		if err := rows.Scan(&e.actor, &e.ip, &e.userAgent, &e.detail); err != nil {
			t.Fatalf("scan security event: %v", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read security events: %v", err)
	}
	return events
}

func operatorCreatedCount(t *testing.T, s *testServer) int {
	t.Helper()
	var count int
	err := s.db.Owner.QueryRow(context.Background(),
		`SELECT count(*) FROM security_events WHERE action = $1`, string(identity.ActionOperatorCreated)).Scan(&count)
	if err != nil {
		t.Fatalf("count operator.created events: %v", err)
	}
	return count
}
