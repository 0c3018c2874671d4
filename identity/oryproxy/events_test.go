package oryproxy

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp/totp"

	"vetvault/identity"
)

// normaliseLoginFailure replaces what differs between two failed logins by
// design, the flow id, the submitted identifier, the CSRF token and the
// timestamps, so the rest can be compared byte for byte.
func normaliseLoginFailure(t *testing.T, body []byte, flowID, identifier string) string {
	t.Helper()
	text := strings.ReplaceAll(string(body), flowID, "FLOW-ID")
	text = strings.ReplaceAll(text, identifier, "IDENTIFIER")
	var decoded any
	if err := json.Unmarshal([]byte(text), &decoded); err != nil {
		t.Fatalf("decode login reply %s: %v", body, err)
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for key, value := range v {
				switch key {
				case "expires_at", "issued_at", "created_at", "updated_at":
					v[key] = "TIME"
					continue
				}
				walk(value)
			}
			if v["name"] == "csrf_token" {
				v["value"] = "CSRF"
			}
		case []any:
			for _, item := range v {
				walk(item)
			}
		}
	}
	walk(decoded)
	normalised, err := json.Marshal(decoded)
	if err != nil {
		t.Fatalf("encode normalised reply: %v", err)
	}
	return string(normalised)
}

func TestDeactivatedLoginLooksLikeWrongPassword(t *testing.T) {
	h := newHarness(t, WithLimits(testLimits()))
	ctx := context.Background()
	wrong := h.signUp(false)
	deactivated := h.signUp(false)
	if err := h.admin.SetActive(ctx, deactivated.id, false); err != nil {
		t.Fatalf("deactivate: %v", err)
	}

	// A password sent under a case-folded key ("ſ" folds to "s") must not
	// reach Kratos's check either.
	foldedKey := func(email, password string) (int, []byte, string) {
		flowID := h.apiLoginFlow()
		body, _ := json.Marshal(map[string]string{"method": "password", "identifier": email, "paſſword": password})
		response, data := h.post("/self-service/login?flow="+flowID, "application/json", body)
		return response.StatusCode, data, flowID
	}
	viaClient := func(email, password string) (int, []byte, string) {
		reply := h.login(email, password)
		return reply.Status, reply.Body, reply.FlowID
	}
	cases := []struct {
		name, email, password string
		submit                func(email, password string) (int, []byte, string)
		wantActor             uuid.UUID
	}{
		{"unknown email", "nobody-" + uuid.NewString()[:8] + "@vetvault.test", "any password", viaClient, uuid.Nil},
		{"wrong password", wrong.email, "wrong password", viaClient, wrong.id},
		{"deactivated account", deactivated.email, deactivated.password, viaClient, deactivated.id},
		{"deactivated account, key case-folded", deactivated.email, deactivated.password, foldedKey, deactivated.id},
	}
	var want string
	for i, c := range cases {
		status, body, flowID := c.submit(c.email, c.password)
		if status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400; body %s", c.name, status, body)
		}
		got := normaliseLoginFailure(t, body, flowID, c.email)
		if i == 0 {
			want = got
		} else if got != want {
			t.Errorf("%s: body\n%s\nwant the same as for an unknown email:\n%s", c.name, got, want)
		}

		failed := h.events.of(identity.ActionLoginFailed)
		if len(failed) != i+1 {
			t.Fatalf("%s: %d login.failed events, want %d", c.name, len(failed), i+1)
		}
		if event := failed[i]; event.ActorID != c.wantActor || event.IdentifierHash != sha256Hex(c.email) {
			t.Errorf("%s: event actor %s, identifier hash %s; want %s, %s", c.name, event.ActorID, event.IdentifierHash, c.wantActor, sha256Hex(c.email))
		}
	}
}

func TestFailedLoginFloor(t *testing.T) {
	h := newHarness(t, WithLimits(testLimits()), WithFailedLoginFloor(300*time.Millisecond))
	target := h.signUp(false)

	started := time.Now()
	if reply := h.login(target.email, "wrong password"); reply.Status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", reply.Status)
	}
	// The login call also creates the flow, so its duration bounds the
	// submission's from above only, and the floor bounds it from below.
	if elapsed := time.Since(started); elapsed < 300*time.Millisecond {
		t.Errorf("failed login took %s, want at least 300ms", elapsed)
	}
}

func TestLoginEvents(t *testing.T) {
	limits := testLimits()
	limits.LoginPerIdentifier = Limit{Attempts: 1, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))
	ctx := context.Background()
	target := h.signUp(true)

	token, err := h.flows.LogIn(ctx, target.email, target.password)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	code, err := totp.GenerateCode(target.secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatalf("compute code: %v", err)
	}
	if reply, err := h.flows.SubmitTOTPCode(ctx, token, code); err != nil || reply.Status != http.StatusOK {
		t.Fatalf("TOTP login: %v, reply %+v", err, reply)
	}
	if err := h.flows.ChangePassword(ctx, token, "Another-long-passphrase-7"); err != nil {
		t.Fatalf("change password: %v", err)
	}
	h.login(target.email, "wrong password")
	h.login(target.email, "wrong password")

	tests := []struct {
		action     identity.Action
		wantActor  uuid.UUID
		wantDetail map[string]string
		wantHash   string
	}{
		{identity.ActionFactorChanged, target.id, map[string]string{"method": "totp", "change": "added"}, ""},
		{identity.ActionLoginSucceeded, target.id, map[string]string{"method": "password", "aal": "aal1"}, ""},
		{identity.ActionLoginSucceeded, target.id, map[string]string{"method": "totp", "aal": "aal2"}, ""},
		{identity.ActionPasswordChanged, target.id, map[string]string{"method": "password"}, ""},
		{identity.ActionLoginFailed, target.id, map[string]string{"method": "password"}, sha256Hex(target.email)},
		{identity.ActionLoginRateLimited, uuid.Nil, map[string]string{"flow": "login", "method": "password", "limit": scopeLoginIdentifier}, sha256Hex(target.email)},
	}
	events := h.events.all()
	if len(events) != len(tests) {
		t.Fatalf("%d events %+v, want %d", len(events), events, len(tests))
	}
	for i, want := range tests {
		got := events[i]
		if got.Action != want.action || got.ActorID != want.wantActor || got.IdentifierHash != want.wantHash {
			t.Errorf("event %d: %s by %s, hash %q; want %s by %s, hash %q", i, got.Action, got.ActorID, got.IdentifierHash, want.action, want.wantActor, want.wantHash)
		}
		if !equalDetail(got.Detail, want.wantDetail) {
			t.Errorf("event %d (%s): detail %v, want %v", i, got.Action, got.Detail, want.wantDetail)
		}
		if got.IP != "127.0.0.1" || got.UserAgent == "" || got.At.IsZero() {
			t.Errorf("event %d (%s): IP %q, user agent %q, at %s; want 127.0.0.1, an agent and a time", i, got.Action, got.IP, got.UserAgent, got.At)
		}
		encoded, _ := json.Marshal(got)
		for _, secret := range []string{target.password, "Another-long-passphrase-7", code, token, target.secret} {
			if strings.Contains(string(encoded), secret) {
				t.Errorf("event %d (%s) contains a secret: %s", i, got.Action, encoded)
			}
		}
	}
}

func TestAuditFailureKeepsLoginWorking(t *testing.T) {
	h := newHarness(t, WithLimits(testLimits()))
	target := h.signUp(false)
	h.events.failing = true

	if reply := h.login(target.email, target.password); reply.Status != http.StatusOK || reply.SessionToken() == "" {
		t.Errorf("login with a failing audit trail: status %d, want 200 with a session; body %s", reply.Status, reply.Body)
	}
}

func equalDetail(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for key, value := range want {
		if got[key] != value {
			return false
		}
	}
	return true
}

func TestSettingsEvent(t *testing.T) {
	tests := []struct {
		name       string
		fields     map[string]string
		wantAction identity.Action
		wantChange string
	}{
		{"password", map[string]string{"method": "password"}, identity.ActionPasswordChanged, ""},
		{"TOTP enrolled", map[string]string{"method": "totp", "totp_code": "123456"}, identity.ActionFactorChanged, "added"},
		{"TOTP removed", map[string]string{"method": "totp", "totp_unlink": "true"}, identity.ActionFactorChanged, "removed"},
		{"recovery codes confirmed", map[string]string{"method": "lookup_secret", "lookup_secret_confirm": "true"}, identity.ActionFactorChanged, "added"},
		{"recovery codes disabled", map[string]string{"method": "lookup_secret", "lookup_secret_disable": "true"}, identity.ActionFactorChanged, "removed"},
		{"security key removed", map[string]string{"method": "webauthn", "webauthn_remove": "a1b2"}, identity.ActionFactorChanged, "removed"},
		{"profile", map[string]string{"method": "profile"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			action, detail := settingsEvent(&submission{method: tt.fields["method"], fields: tt.fields})
			if action != tt.wantAction || detail["change"] != tt.wantChange {
				t.Errorf("got %q with change %q, want %q with change %q", action, detail["change"], tt.wantAction, tt.wantChange)
			}
			for _, secret := range []string{"123456", "a1b2"} {
				for _, value := range detail {
					if value == secret {
						t.Errorf("detail %v carries a submitted value", detail)
					}
				}
			}
		})
	}
}
