package oryproxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp/totp"

	"vetvault/identity"
)

func TestUsedCodesMarkUsed(t *testing.T) {
	db := newDatabase(t)
	c := &clock{now: time.Now()}
	codes := &usedCodes{db: db.App, now: c.Now}
	ctx := context.Background()
	alice, bob := uuid.New(), uuid.New()

	steps := []struct {
		name      string
		advance   time.Duration
		identity  uuid.UUID
		code      string
		wantFirst bool
	}{
		{"first use", 0, alice, "123456", true},
		{"same code again", 0, alice, "123456", false},
		{"same code 90 s later", 90 * time.Second, alice, "123456", false},
		{"another code", 0, alice, "654321", true},
		{"same digits for another identity", 0, bob, "123456", true},
		{"same digits after the retention", codeRetention, alice, "123456", true},
	}
	for _, step := range steps {
		c.Advance(step.advance)
		first, err := codes.markUsed(ctx, step.identity, step.code)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if first != step.wantFirst {
			t.Errorf("%s: first = %v, want %v", step.name, first, step.wantFirst)
		}
	}

	var rows int
	if err := db.Owner.QueryRow(ctx, `SELECT count(*) FROM used_totp_codes WHERE code_hash = convert_to('123456', 'UTF8')`).Scan(&rows); err != nil {
		t.Fatalf("count plain codes: %v", err)
	}
	if rows != 0 {
		t.Errorf("%d rows store the code itself, want 0", rows)
	}
}

func TestTOTPCodeWorksOnce(t *testing.T) {
	h := newHarness(t, WithLimits(testLimits()))
	target := h.signUp(true)
	ctx := context.Background()

	// Registration used the current code to enrol. Enrolment is not a login,
	// so a login may still use that code once.
	code, err := totp.GenerateCode(target.secret, time.Now())
	if err != nil {
		t.Fatalf("compute code: %v", err)
	}

	firstToken, err := h.flows.LogIn(ctx, target.email, target.password)
	if err != nil {
		t.Fatalf("first password login: %v", err)
	}
	first, err := h.flows.SubmitTOTPCode(ctx, firstToken, code)
	if err != nil {
		t.Fatalf("submit code: %v", err)
	}
	if first.Status != http.StatusOK {
		t.Fatalf("first use: status %d, want 200; body %s", first.Status, first.Body)
	}

	secondToken, err := h.flows.LogIn(ctx, target.email, target.password)
	if err != nil {
		t.Fatalf("second password login: %v", err)
	}
	second, err := h.flows.SubmitTOTPCode(ctx, secondToken, code)
	if err != nil {
		t.Fatalf("submit code again: %v", err)
	}
	if second.Status != http.StatusBadRequest {
		t.Fatalf("second use: status %d, want 400; body %s", second.Status, second.Body)
	}
	if p := problemOf(t, second.Header, second.Body); !strings.Contains(p.Detail, "already used") || !strings.Contains(p.Detail, "next code") {
		t.Errorf("detail %q, want it to say the code was used and to wait for the next", p.Detail)
	}
	if second.Header.Get("Set-Cookie") != "" {
		t.Errorf("rejected login sets a cookie: %q", second.Header.Get("Set-Cookie"))
	}

	if _, err := h.sessions.Verify(ctx, identity.Credentials{Token: secondToken}); !errors.Is(err, identity.ErrSessionInvalid) {
		t.Errorf("session of the reused code: err %v, want %v", err, identity.ErrSessionInvalid)
	}
	session, err := h.sessions.Verify(ctx, identity.Credentials{Token: firstToken})
	if err != nil || session.AAL != identity.AAL2 {
		t.Errorf("session of the first use: aal %q, err %v; want aal2 and no error", session.AAL, err)
	}

	reused := h.events.of(identity.ActionSecondFactorReused)
	if len(reused) != 1 || reused[0].ActorID != target.id {
		t.Errorf("second_factor.reused events %+v, want one by %s", reused, target.id)
	}
}

func TestTOTPCodeWorksOnceInBrowsers(t *testing.T) {
	h := newHarness(t, WithLimits(testLimits()))
	target := h.signUp(true)
	ctx := context.Background()
	code, err := totp.GenerateCode(target.secret, time.Now())
	if err != nil {
		t.Fatalf("compute code: %v", err)
	}

	signIn := func(b *browser) (*http.Response, []byte) {
		t.Helper()
		password := url.Values{"method": {"password"}, "identifier": {target.email}, "password": {target.password}}
		if response, body := b.submit("", password); response.StatusCode != http.StatusSeeOther || b.sessionCookie().Cookie == "" {
			t.Fatalf("password step: status %d, want 303 with a session cookie; body %s", response.StatusCode, body)
		}
		return b.submit("aal=aal2", url.Values{"method": {"totp"}, "totp_code": {code}})
	}

	first := h.newBrowser()
	if response, body := signIn(first); response.StatusCode != http.StatusSeeOther {
		t.Fatalf("first use: status %d, want 303; body %s", response.StatusCode, body)
	}
	if session, err := h.sessions.Verify(ctx, first.sessionCookie()); err != nil || session.AAL != identity.AAL2 {
		t.Fatalf("first browser's session: aal %q, err %v; want aal2", session.AAL, err)
	}

	second := h.newBrowser()
	response, body := signIn(second)
	if response.StatusCode != http.StatusBadRequest {
		t.Fatalf("second use: status %d, want 400; body %s", response.StatusCode, body)
	}
	if p := problemOf(t, response.Header, body); !strings.Contains(p.Detail, "already used") {
		t.Errorf("detail %q, want it to say the code was already used", p.Detail)
	}
	if _, err := h.sessions.Verify(ctx, second.sessionCookie()); !errors.Is(err, identity.ErrSessionInvalid) {
		t.Errorf("second browser's session: err %v, want %v", err, identity.ErrSessionInvalid)
	}

	succeeded := h.events.of(identity.ActionLoginSucceeded)
	if len(succeeded) != 3 {
		t.Fatalf("%d login.succeeded events, want 3 (two password steps, one TOTP step)", len(succeeded))
	}
	for _, event := range succeeded {
		if event.ActorID != target.id {
			t.Errorf("login.succeeded %v by %s, want by %s", event.Detail, event.ActorID, target.id)
		}
	}
}
