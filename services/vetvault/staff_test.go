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
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/identity/selfservice"
)

var (
	invitationCode = regexp.MustCompile(`Code: (\S+)`)
	invitationLink = regexp.MustCompile(`https?://\S+flow=\S+`)
	recoveryCode   = regexp.MustCompile(`\b(\d{6})\b`)
)

// clinicEvents counts the clinic's audit events with action about target.
func (s *testServer) clinicEvents(clinicID, action, target string) int {
	s.t.Helper()
	var n int
	err := s.db.App.InClinic(context.Background(), uuid.MustParse(clinicID), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(),
			`SELECT count(*) FROM audit_events WHERE action = $1 AND target_id = $2`, action, target).Scan(&n)
	})
	if err != nil {
		s.t.Fatalf("count audit events: %v", err)
	}
	return n
}

// securityEvents counts platform security events with action about target.
// Only the migration owner may read them.
func (s *testServer) securityEvents(action, target string) int {
	s.t.Helper()
	var n int
	err := s.db.Owner.QueryRow(context.Background(),
		`SELECT count(*) FROM security_events WHERE action = $1 AND target_id = $2`, action, target).Scan(&n)
	if err != nil {
		s.t.Fatalf("count security events: %v", err)
	}
	return n
}

func newEmail(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test"
}

// invitee is a person who accepted an invitation in a browser.
type invitee struct {
	email, password, secret string
	browser                 *selfservice.Browser
}

// invite sends an invitation as inviter and returns the response.
func (s *testServer) invite(token, clinicID, email, role string) response {
	s.t.Helper()
	return s.do(http.MethodPost, "/v1/clinics/"+clinicID+"/invitations", token,
		mustJSON(s.t, map[string]string{"email": email, "role": role}))
}

// accept follows the emailed invitation as the invitee would: recovery code,
// new password, TOTP enrolment.
func (s *testServer) accept(email string) invitee {
	s.t.Helper()
	text := latestMail(s.t, strings.ToLower(email), "Code:")
	code := invitationCode.FindStringSubmatch(text)
	link := invitationLink.FindString(text)
	if code == nil || link == "" {
		s.t.Fatalf("invitation mail has no code or link:\n%s", text)
	}
	flowID, err := selfservice.RecoveryFlowID(link)
	if err != nil {
		s.t.Fatalf("parse invitation link: %v", err)
	}
	browser, err := selfservice.NewBrowser(s.url+"/.ory", 15*time.Second)
	if err != nil {
		s.t.Fatalf("new browser: %v", err)
	}
	ctx := context.Background()
	settingsFlow, err := browser.Recover(ctx, flowID, code[1])
	if err != nil {
		s.t.Fatalf("accept invitation code: %v", err)
	}
	person := invitee{email: email, password: rand.Text(), browser: browser}
	if err := browser.SetPassword(ctx, settingsFlow, person.password); err != nil {
		s.t.Fatalf("set password: %v", err)
	}
	if person.secret, err = browser.EnrolTOTP(ctx); err != nil {
		s.t.Fatalf("enrol TOTP: %v", err)
	}
	return person
}

// browse sends a request with the invitee's browser cookies.
func (s *testServer) browse(person invitee, method, path string) response {
	s.t.Helper()
	return s.browseJSON(person, method, path, nil)
}

// browseJSON sends a request with body as JSON (none when body is nil) from
// the browser of person, whose cookie jar holds the session.
func (s *testServer) browseJSON(person invitee, method, path string, body any) response {
	s.t.Helper()
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(mustJSON(s.t, body))
	}
	request, err := http.NewRequest(method, s.url+path, reader)
	if err != nil {
		s.t.Fatalf("new request: %v", err)
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	resp, err := person.browser.HTTP().Do(request)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: data, header: resp.Header}
}

type invitationBody struct {
	IdentityID string `json:"identity_id"`
	Email      string `json:"email"`
	NewAccount bool   `json:"new_account"`
}

func TestInvitationToFirstLogin(t *testing.T) {
	s := newTestServer(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Invitation Clinic")
	mixedCase := "New.Vet-" + rand.Text()[:8] + "@VetVault.test"

	r := s.invite(owner.token, clinic.ID, mixedCase, "veterinarian")
	if r.status != http.StatusCreated {
		t.Fatalf("invite: status %d, body %s", r.status, r.body)
	}
	var sent invitationBody
	r.json(t, &sent)
	if sent.Email != strings.ToLower(mixedCase) {
		t.Errorf("stored email = %q, want %q", sent.Email, strings.ToLower(mixedCase))
	}
	if !sent.NewAccount {
		t.Error("new_account = false for an email without a login, want true")
	}

	for _, action := range []string{"invitation.sent", "role.granted"} {
		if n := s.clinicEvents(clinic.ID, action, sent.IdentityID); n != 1 {
			t.Errorf("%d %s audit events for the invitee, want 1", n, action)
		}
	}

	vet := s.accept(mixedCase)
	me := s.browse(vet, http.MethodGet, "/v1/me")
	if me.status != http.StatusOK {
		t.Fatalf("invitee GET /v1/me: status %d, body %s", me.status, me.body)
	}
	if !strings.Contains(string(me.body), clinic.ID) || !strings.Contains(string(me.body), `"veterinarian"`) {
		t.Errorf("invitee /v1/me = %s, want the clinic with the veterinarian role", me.body)
	}
	if r := s.browse(vet, http.MethodGet, "/v1/clinics/"+clinic.ID+"/appointments"); r.status != http.StatusOK {
		t.Errorf("invitee lists appointments: status %d, body %s", r.status, r.body)
	}
	if r := s.browse(vet, http.MethodGet, "/v1/clinics/"+clinic.ID+"/staff"); r.status != http.StatusForbidden {
		t.Errorf("veterinarian lists staff: status %d, want 403", r.status)
	}

	t.Run("invitation code works once", func(t *testing.T) {
		text := latestMail(t, strings.ToLower(mixedCase), "Code:")
		flowID, _ := selfservice.RecoveryFlowID(invitationLink.FindString(text))
		browser, _ := selfservice.NewBrowser(s.url+"/.ory", 15*time.Second)
		if _, err := browser.Recover(context.Background(), flowID, invitationCode.FindStringSubmatch(text)[1]); err == nil {
			t.Error("second use of the invitation code succeeded, want it rejected")
		}
	})

	t.Run("email case variants sign in to one identity", func(t *testing.T) {
		token, err := s.flows.LogIn(context.Background(), strings.ToUpper(mixedCase), vet.password)
		if err != nil {
			t.Fatalf("log in with upper-case email: %v", err)
		}
		token, err = s.flows.CompleteSecondFactor(context.Background(), token, vet.secret, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatalf("second factor: %v", err)
		}
		var me struct {
			IdentityID string `json:"identity_id"`
		}
		s.do(http.MethodGet, "/v1/me", token, nil).json(t, &me)
		if me.IdentityID != sent.IdentityID {
			t.Errorf("identity after upper-case login = %s, want %s", me.IdentityID, sent.IdentityID)
		}
	})

	t.Run("staff list shows both members", func(t *testing.T) {
		var list struct {
			Members []struct {
				Email string   `json:"email"`
				Roles []string `json:"roles"`
			} `json:"members"`
		}
		s.do(http.MethodGet, "/v1/clinics/"+clinic.ID+"/staff", owner.token, nil).json(t, &list)
		if len(list.Members) != 2 {
			t.Fatalf("staff list has %d members, want 2", len(list.Members))
		}
	})
}

func TestInvitationLocumAndRules(t *testing.T) {
	s := newTestServer(t)
	ownerA, ownerB := s.signUp(true), s.signUp(true)
	clinicA := s.createClinic(ownerA.token, "Clinic A")
	clinicB := s.createClinic(ownerB.token, "Clinic B")
	email := newEmail("locum")

	var first, second invitationBody
	if r := s.invite(ownerA.token, clinicA.ID, email, "veterinarian"); r.status != http.StatusCreated {
		t.Fatalf("invite to A: status %d, body %s", r.status, r.body)
	} else {
		r.json(t, &first)
	}
	locum := s.accept(email)

	r := s.invite(ownerB.token, clinicB.ID, strings.ToUpper(email), "nurse")
	if r.status != http.StatusCreated {
		t.Fatalf("invite to B: status %d, body %s", r.status, r.body)
	}
	r.json(t, &second)
	if second.IdentityID != first.IdentityID {
		t.Errorf("second clinic's invitation made identity %s, want the existing %s", second.IdentityID, first.IdentityID)
	}
	if second.NewAccount {
		t.Error("new_account = true for an existing login, want false")
	}
	latestMail(t, email, "You now have the role nurse")

	me := s.browse(locum, http.MethodGet, "/v1/me")
	if !strings.Contains(string(me.body), clinicA.ID) || !strings.Contains(string(me.body), clinicB.ID) {
		t.Errorf("locum /v1/me = %s, want both clinics", me.body)
	}

	t.Run("same role twice conflicts", func(t *testing.T) {
		if r := s.invite(ownerA.token, clinicA.ID, email, "veterinarian"); r.status != http.StatusConflict {
			t.Errorf("status %d, want 409; body %s", r.status, r.body)
		}
	})

	t.Run("bad invitations are rejected", func(t *testing.T) {
		for _, body := range []map[string]string{
			{"email": "not-an-email", "role": "nurse"},
			{"email": newEmail("x"), "role": "janitor"},
			{"email": newEmail("x")},
			{"email": newEmail("x"), "role": "nurse", "branch_id": uuid.NewString()},
		} {
			r := s.do(http.MethodPost, "/v1/clinics/"+clinicA.ID+"/invitations", ownerA.token, mustJSON(t, body))
			if r.status != http.StatusUnprocessableEntity {
				t.Errorf("invite %v: status %d, want 422; body %s", body, r.status, r.body)
			}
		}
	})

	t.Run("manager cannot invite an owner", func(t *testing.T) {
		managerEmail := newEmail("manager")
		if r := s.invite(ownerA.token, clinicA.ID, managerEmail, "manager"); r.status != http.StatusCreated {
			t.Fatalf("invite manager: status %d", r.status)
		}
		manager := s.accept(managerEmail)
		request, _ := http.NewRequest(http.MethodPost, s.url+"/v1/clinics/"+clinicA.ID+"/invitations",
			strings.NewReader(string(mustJSON(t, map[string]string{"email": newEmail("boss"), "role": "owner"}))))
		request.Header.Set("Content-Type", "application/json")
		resp, err := manager.browser.HTTP().Do(request)
		if err != nil {
			t.Fatalf("manager invites owner: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("manager invites owner: status %d, want 403", resp.StatusCode)
		}
	})

	t.Run("removal from one clinic keeps the other", func(t *testing.T) {
		r := s.do(http.MethodDelete, "/v1/clinics/"+clinicA.ID+"/staff/"+first.IdentityID, ownerA.token, nil)
		if r.status != http.StatusNoContent {
			t.Fatalf("remove locum from A: status %d, body %s", r.status, r.body)
		}
		if r := s.browse(locum, http.MethodGet, "/v1/clinics/"+clinicA.ID+"/appointments"); r.status != http.StatusNotFound {
			t.Errorf("removed locum reads clinic A: status %d, want 404", r.status)
		}
		if r := s.browse(locum, http.MethodGet, "/v1/clinics/"+clinicB.ID+"/appointments"); r.status != http.StatusOK {
			t.Errorf("locum reads clinic B after removal from A: status %d, want 200", r.status)
		}
	})

	t.Run("branch role elsewhere keeps the login active", func(t *testing.T) {
		email := newEmail("branch-locum")
		var sent invitationBody
		s.invite(ownerA.token, clinicA.ID, email, "nurse").json(t, &sent)
		person := s.accept(email)
		r := s.do(http.MethodPost, "/v1/clinics/"+clinicB.ID+"/invitations", ownerB.token,
			mustJSON(t, map[string]string{"email": email, "role": "receptionist", "branch_id": clinicB.Branches[0].ID}))
		if r.status != http.StatusCreated {
			t.Fatalf("invite at a branch of B: status %d, body %s", r.status, r.body)
		}
		if r := s.do(http.MethodPost, "/v1/clinics/"+clinicA.ID+"/staff/"+sent.IdentityID+"/deactivate", ownerA.token, nil); r.status != http.StatusNoContent {
			t.Fatalf("deactivate in A: status %d, body %s", r.status, r.body)
		}
		me := s.browse(person, http.MethodGet, "/v1/me")
		if me.status != http.StatusOK {
			t.Fatalf("after deactivation in A: status %d, want 200 (a branch role in B remains)", me.status)
		}
		if want := "receptionist@" + clinicB.Branches[0].ID; !strings.Contains(string(me.body), want) {
			t.Errorf("/v1/me = %s, want the role %s", me.body, want)
		}
	})

	t.Run("last owner cannot be removed", func(t *testing.T) {
		var me struct {
			IdentityID string `json:"identity_id"`
		}
		s.do(http.MethodGet, "/v1/me", ownerA.token, nil).json(t, &me)
		if r := s.do(http.MethodDelete, "/v1/clinics/"+clinicA.ID+"/staff/"+me.IdentityID, ownerA.token, nil); r.status != http.StatusForbidden {
			t.Errorf("owner removes self: status %d, want 403", r.status)
		}
	})
}

func TestRevokedIdentitiesGet401(t *testing.T) {
	s := newTestServer(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Revocation Clinic")
	ctx := context.Background()

	t.Run("deactivated staff member", func(t *testing.T) {
		email := newEmail("leaver")
		var sent invitationBody
		s.invite(owner.token, clinic.ID, email, "receptionist").json(t, &sent)
		leaver := s.accept(email)
		if r := s.browse(leaver, http.MethodGet, "/v1/me"); r.status != http.StatusOK {
			t.Fatalf("before deactivation: status %d", r.status)
		}
		r := s.do(http.MethodPost, "/v1/clinics/"+clinic.ID+"/staff/"+sent.IdentityID+"/deactivate", owner.token, nil)
		if r.status != http.StatusNoContent {
			t.Fatalf("deactivate: status %d, body %s", r.status, r.body)
		}
		if r := s.browse(leaver, http.MethodGet, "/v1/me"); r.status != http.StatusUnauthorized {
			t.Errorf("deactivated member's next request: status %d, want 401", r.status)
		}
		if _, err := s.flows.LogIn(ctx, email, leaver.password); err == nil {
			t.Error("deactivated member signed in again, want it refused")
		}
		if n := s.clinicEvents(clinic.ID, "role.revoked", sent.IdentityID); n != 1 {
			t.Errorf("%d role.revoked audit events, want 1", n)
		}
		if n := s.securityEvents("identity.deactivated", sent.IdentityID); n != 1 {
			t.Errorf("%d identity.deactivated security events, want 1", n)
		}
	})

	t.Run("password change ends other sessions", func(t *testing.T) {
		person := s.signUp(true)
		other, err := s.flows.LogIn(ctx, person.email, person.password)
		if err != nil {
			t.Fatalf("second login: %v", err)
		}
		other, err = s.flows.CompleteSecondFactor(ctx, other, person.secret, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatalf("second factor: %v", err)
		}
		// Use the other session first, so the server has it cached.
		if r := s.do(http.MethodGet, "/v1/me", other, nil); r.status != http.StatusOK {
			t.Fatalf("other session before the password change: status %d", r.status)
		}
		if err := s.flows.ChangePassword(ctx, person.token, rand.Text()); err != nil {
			t.Fatalf("change password: %v", err)
		}
		if r := s.do(http.MethodGet, "/v1/me", other, nil); r.status != http.StatusUnauthorized {
			t.Errorf("other session after password change: status %d, want 401", r.status)
		}
		if r := s.do(http.MethodGet, "/v1/me", person.token, nil); r.status != http.StatusOK {
			t.Errorf("session that changed the password: status %d, want 200", r.status)
		}
	})

	t.Run("logged-out session", func(t *testing.T) {
		person := s.signUp(true)
		if r := s.do(http.MethodGet, "/v1/me", person.token, nil); r.status != http.StatusOK {
			t.Fatalf("before logout: status %d", r.status)
		}
		if err := s.flows.LogOut(ctx, person.token); err != nil {
			t.Fatalf("log out: %v", err)
		}
		if r := s.do(http.MethodGet, "/v1/me", person.token, nil); r.status != http.StatusUnauthorized {
			t.Errorf("after logout: status %d, want 401", r.status)
		}
	})

	t.Run("own session revoked", func(t *testing.T) {
		person := s.signUp(true)
		other, err := s.flows.LogIn(ctx, person.email, person.password)
		if err != nil {
			t.Fatalf("second login: %v", err)
		}
		other, err = s.flows.CompleteSecondFactor(ctx, other, person.secret, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatalf("second factor: %v", err)
		}
		var list struct {
			Sessions []struct {
				ID      string `json:"id"`
				Current bool   `json:"current"`
			} `json:"sessions"`
		}
		s.do(http.MethodGet, "/v1/me/sessions", person.token, nil).json(t, &list)
		if len(list.Sessions) != 2 {
			t.Fatalf("session list has %d sessions, want 2", len(list.Sessions))
		}
		target := ""
		for _, session := range list.Sessions {
			if !session.Current {
				target = session.ID
			}
		}
		if r := s.do(http.MethodDelete, "/v1/me/sessions/"+target, person.token, nil); r.status != http.StatusNoContent {
			t.Fatalf("revoke session: status %d, body %s", r.status, r.body)
		}
		if r := s.do(http.MethodGet, "/v1/me", other, nil); r.status != http.StatusUnauthorized {
			t.Errorf("revoked session's next request: status %d, want 401", r.status)
		}
		var me struct {
			IdentityID string `json:"identity_id"`
		}
		s.do(http.MethodGet, "/v1/me", person.token, nil).json(t, &me)
		if n := s.securityEvents("session.revoked", me.IdentityID); n != 1 {
			t.Errorf("%d session.revoked security events, want 1", n)
		}
		if r := s.do(http.MethodDelete, "/v1/me/sessions/"+uuid.NewString(), person.token, nil); r.status != http.StatusNotFound {
			t.Errorf("revoke unknown session: status %d, want 404", r.status)
		}
	})

	t.Run("deleted identity", func(t *testing.T) {
		person := s.signUp(true)
		var me struct {
			IdentityID string `json:"identity_id"`
		}
		s.do(http.MethodGet, "/v1/me", person.token, nil).json(t, &me)
		cfg, err := loadConfig()
		if err != nil {
			t.Fatalf("load config: %v", err)
		}
		admin := identity.NewAdmin(cfg.KratosAdminURL, http.DefaultClient)
		// A platform path that deletes an identity deletes it in Kratos and
		// then invalidates its cached sessions, as deactivation does.
		if err := admin.Delete(ctx, uuid.MustParse(me.IdentityID)); err != nil {
			t.Fatalf("delete identity: %v", err)
		}
		if err := s.sessions.Invalidate(ctx, uuid.MustParse(me.IdentityID)); err != nil {
			t.Fatalf("invalidate sessions: %v", err)
		}
		if r := s.do(http.MethodGet, "/v1/me", person.token, nil); r.status != http.StatusUnauthorized {
			t.Errorf("deleted identity's next request: status %d, want 401", r.status)
		}
	})
}

func TestRecoveryStaysAAL1UntilTOTP(t *testing.T) {
	s := newTestServer(t)
	person := s.signUp(true)
	ctx := context.Background()

	flowID, err := s.flows.StartRecovery(ctx, person.email)
	if err != nil {
		t.Fatalf("start recovery: %v", err)
	}
	code := recoveryCode.FindStringSubmatch(latestMail(t, person.email, "recover"))
	if code == nil {
		t.Fatal("recovery mail has no six-digit code")
	}
	token, err := s.flows.FinishRecovery(ctx, flowID, code[1])
	if err != nil {
		t.Fatalf("finish recovery: %v", err)
	}
	r := s.do(http.MethodGet, "/v1/me", token, nil)
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "second factor") {
		t.Errorf("recovered session: status %d, body %s; want 403 asking for the second factor", r.status, r.body)
	}
	raised, err := s.flows.CompleteSecondFactor(ctx, token, person.secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatalf("second factor after recovery: %v", err)
	}
	if r := s.do(http.MethodGet, "/v1/me", raised, nil); r.status != http.StatusOK {
		t.Errorf("recovered session after TOTP: status %d, want 200", r.status)
	}
}

func TestPrivilegedChangeNeedsRecentSignIn(t *testing.T) {
	t.Setenv("VETVAULT_PRIVILEGED_WINDOW", "1ms")
	s := newTestServer(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Step-up Clinic")
	time.Sleep(5 * time.Millisecond)

	r := s.invite(owner.token, clinic.ID, newEmail("late"), "nurse")
	var p problem
	r.json(t, &p)
	if r.status != http.StatusForbidden || !strings.Contains(p.Detail, "recent sign-in") {
		t.Errorf("invite with an old sign-in: status %d, detail %q; want 403 asking for a recent sign-in", r.status, p.Detail)
	}
	if !strings.Contains(r.header.Get("Link"), "refresh=true") {
		t.Errorf("Link %q, want a step-up link", r.header.Get("Link"))
	}
}

// TestEveryOperationNeedsAAL2 walks every operation in the OpenAPI document,
// so a new operation cannot be forgotten: without a session it gets 401, and
// with a session below AAL2 it gets 403.
func TestEveryOperationNeedsAAL2(t *testing.T) {
	s := newTestServer(t)
	var document struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	s.do(http.MethodGet, "/openapi.json", "", nil).json(t, &document)

	enrolled := s.signUp(true)
	passwordOnly, err := s.flows.LogIn(context.Background(), enrolled.email, enrolled.password)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	unenrolled := s.signUp(false)
	placeholder := regexp.MustCompile(`\{[^}]+\}`)

	count := 0
	for path, operations := range document.Paths {
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		concrete := placeholder.ReplaceAllStringFunc(path, func(string) string { return uuid.NewString() })
		for method := range operations {
			method = strings.ToUpper(method)
			count++
			name := fmt.Sprintf("%s %s", method, path)
			if r := s.do(method, concrete, "", []byte("{}")); r.status != http.StatusUnauthorized {
				t.Errorf("%s without a session: status %d, want 401", name, r.status)
			}
			for label, token := range map[string]string{"password-only": passwordOnly, "unenrolled": unenrolled.token} {
				if r := s.do(method, concrete, token, []byte("{}")); r.status != http.StatusForbidden {
					t.Errorf("%s with a %s session: status %d, want 403", name, label, r.status)
				}
			}
		}
	}
	if count < 10 {
		t.Errorf("found %d /v1 operations in the OpenAPI document, want at least 10", count)
	}
}
