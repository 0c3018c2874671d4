package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp/totp"

	"vetvault/identity"
)

// The tests of the guarded Kratos proxy run the whole server against the
// real Kratos and read the audit trail as the database owner, because the
// runtime role may only append to it.

func TestLoginLimitEndToEnd(t *testing.T) {
	s := guardServer(t)
	target := s.signUp(false)
	ctx := context.Background()

	// The default limit is 10 attempts per account in 15 minutes. Failed
	// logins each take over a second, so they run at once.
	statuses := make([]int, 10)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := s.flows.SubmitPasswordLogin(ctx, target.email, "wrong password "+strconv.Itoa(i))
			if err == nil {
				statuses[i] = reply.Status
			}
		}()
	}
	wg.Wait()
	for i, status := range statuses {
		if status != http.StatusBadRequest {
			t.Errorf("failed login %d: status %d, want 400", i+1, status)
		}
	}

	limited, err := s.flows.SubmitPasswordLogin(ctx, target.email, target.password)
	if err != nil {
		t.Fatalf("submit login: %v", err)
	}
	if limited.Status != http.StatusTooManyRequests {
		t.Fatalf("11th login: status %d, want 429; body %s", limited.Status, limited.Body)
	}
	if retry, err := strconv.Atoi(limited.Header.Get("Retry-After")); err != nil || retry < 1 || retry > 30*60 {
		t.Errorf("Retry-After %q, want seconds within two 15-minute windows", limited.Header.Get("Retry-After"))
	}
	if ct := limited.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(limited.Body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", limited.Body, err)
	}
	if p.Status != http.StatusTooManyRequests || !strings.Contains(p.Detail, "Too many sign-in attempts") || !strings.Contains(p.Detail, "Try again in") {
		t.Errorf("problem %+v, want a 429 that says when to try again", p)
	}
	if limited.SessionToken() != "" {
		t.Error("the limited login returned a session token")
	}

	hash := guardHash(target.email)
	counts := map[string]int{}
	for _, row := range guardEvents(t, s) {
		if row.IdentifierHash == hash {
			counts[row.Action]++
		}
	}
	if counts["login.failed"] != 10 || counts["login.rate_limited"] != 1 || counts["login.succeeded"] != 0 {
		t.Errorf("events for the account %v, want 10 login.failed, 1 login.rate_limited and no login.succeeded", counts)
	}
}

func TestLoginFailuresLookAlikeEndToEnd(t *testing.T) {
	s := guardServer(t)
	ctx := context.Background()
	admin := identity.NewAdmin(guardAdminURL(t), s.client)

	wrongPassword := s.signUp(false)
	deactivated := s.signUp(false)
	found, err := admin.FindByEmail(ctx, deactivated.email)
	if err != nil {
		t.Fatalf("find identity: %v", err)
	}
	if err := admin.SetActive(ctx, found.ID, false); err != nil {
		t.Fatalf("deactivate: %v", err)
	}
	cases := []struct{ name, email, password string }{
		{"unknown email", "nobody-" + uuid.NewString()[:8] + "@vetvault.test", "any password at all"},
		{"wrong password", wrongPassword.email, "wrong password"},
		{"deactivated account", deactivated.email, deactivated.password},
	}

	t.Run("API flow", func(t *testing.T) {
		var want string
		for i, c := range cases {
			reply, err := s.flows.SubmitPasswordLogin(ctx, c.email, c.password)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if reply.Status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", c.name, reply.Status)
			}
			got := guardNormalise(t, reply.Body, reply.FlowID, c.email)
			if !strings.Contains(got, "The provided credentials are invalid") {
				t.Errorf("%s: body %s, want Kratos's invalid-credentials message", c.name, got)
			}
			if i == 0 {
				want = got
			} else if got != want {
				t.Errorf("%s: body\n%s\nwant the same as for an unknown email:\n%s", c.name, got, want)
			}
		}
	})

	t.Run("browser form", func(t *testing.T) {
		var wantRedirect, wantFlow string
		for i, c := range cases {
			status, location, flow, flowID := guardBrowserLogin(t, s, c.email, c.password)
			if status != http.StatusSeeOther {
				t.Errorf("%s: status %d, want 303 back to the login page", c.name, status)
			}
			redirect := strings.ReplaceAll(location, flowID, "FLOW-ID")
			got := guardNormalise(t, flow, flowID, c.email)
			if i == 0 {
				wantRedirect, wantFlow = redirect, got
				continue
			}
			if redirect != wantRedirect {
				t.Errorf("%s: redirect %q, want %q", c.name, redirect, wantRedirect)
			}
			if got != wantFlow {
				t.Errorf("%s: flow\n%s\nwant the same as for an unknown email:\n%s", c.name, got, wantFlow)
			}
		}
	})
}

func TestTOTPCodeWorksOnceEndToEnd(t *testing.T) {
	s := guardServer(t)
	owner := s.signUp(true)
	ctx := context.Background()
	code, err := totp.GenerateCode(owner.secret, time.Now())
	if err != nil {
		t.Fatalf("compute code: %v", err)
	}

	first := guardPasswordLogin(t, s, owner.email, owner.password)
	if reply, err := s.flows.SubmitTOTPCode(ctx, first, code); err != nil || reply.Status != http.StatusOK {
		t.Fatalf("first use of the code: err %v, reply %d %s", err, reply.Status, reply.Body)
	}

	second := guardPasswordLogin(t, s, owner.email, owner.password)
	reply, err := s.flows.SubmitTOTPCode(ctx, second, code)
	if err != nil {
		t.Fatalf("submit the code again: %v", err)
	}
	if reply.Status != http.StatusBadRequest {
		t.Fatalf("second use: status %d, want 400; body %s", reply.Status, reply.Body)
	}
	var p problem
	if err := json.Unmarshal(reply.Body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", reply.Body, err)
	}
	if ct := reply.Header.Get("Content-Type"); ct != "application/problem+json" || !strings.Contains(p.Detail, "already used") {
		t.Errorf("Content-Type %q, detail %q; want a problem saying the code was already used", ct, p.Detail)
	}

	if r := s.do(http.MethodGet, "/v1/me", second, nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/me with the session of the reused code: status %d, want 401", r.status)
	}
	if r := s.do(http.MethodGet, "/v1/me", first, nil); r.status != http.StatusOK {
		t.Errorf("GET /v1/me with the session of the first use: status %d, want 200; body %s", r.status, r.body)
	}

	reused := 0
	for _, row := range guardEvents(t, s) {
		if row.Action == "second_factor.reused" {
			reused++
		}
	}
	if reused != 1 {
		t.Errorf("%d second_factor.reused events, want 1", reused)
	}
}

// TestTOTPStepsEndToEnd shows Kratos's own window, which the proxy leaves
// as it is: pquerna/otp's totp.Validate accepts one 30-second step of skew.
func TestTOTPStepsEndToEnd(t *testing.T) {
	s := guardServer(t)
	owner := s.signUp(true)
	ctx := context.Background()

	// A code two steps away must not slide into the window because the
	// step changed between computing and checking it.
	guardAwayFromStepEdge(5 * time.Second)
	now := time.Now()
	tests := []struct {
		name   string
		offset time.Duration
		want   int
	}{
		{"one step behind", -30 * time.Second, http.StatusOK},
		{"one step ahead", 30 * time.Second, http.StatusOK},
		{"two steps behind", -60 * time.Second, http.StatusBadRequest},
		{"two steps ahead", 60 * time.Second, http.StatusBadRequest},
	}
	for _, tt := range tests {
		code, err := totp.GenerateCode(owner.secret, now.Add(tt.offset))
		if err != nil {
			t.Fatalf("%s: compute code: %v", tt.name, err)
		}
		token := guardPasswordLogin(t, s, owner.email, owner.password)
		reply, err := s.flows.SubmitTOTPCode(ctx, token, code)
		if err != nil {
			t.Fatalf("%s: submit code: %v", tt.name, err)
		}
		if reply.Status != tt.want {
			t.Errorf("%s: status %d, want %d; body %s", tt.name, reply.Status, tt.want, reply.Body)
		}
		wantMe := http.StatusOK
		if tt.want != http.StatusOK {
			wantMe = http.StatusForbidden // the session stays at AAL1
		}
		if r := s.do(http.MethodGet, "/v1/me", token, nil); r.status != wantMe {
			t.Errorf("%s: GET /v1/me status %d, want %d", tt.name, r.status, wantMe)
		}
	}
}

func TestLoginAuditEndToEnd(t *testing.T) {
	s := guardServer(t)
	owner := s.signUp(true)
	ctx := context.Background()
	found, err := identity.NewAdmin(guardAdminURL(t), s.client).FindByEmail(ctx, owner.email)
	if err != nil {
		t.Fatalf("find identity: %v", err)
	}

	token := guardPasswordLogin(t, s, owner.email, owner.password)
	code, err := totp.GenerateCode(owner.secret, time.Now().Add(30*time.Second))
	if err != nil {
		t.Fatalf("compute code: %v", err)
	}
	if reply, err := s.flows.SubmitTOTPCode(ctx, token, code); err != nil || reply.Status != http.StatusOK {
		t.Fatalf("TOTP login: err %v, status %d", err, reply.Status)
	}
	newPassword := "Another-long-passphrase-" + strconv.Itoa(time.Now().Nanosecond())
	if err := s.flows.ChangePassword(ctx, token, newPassword); err != nil {
		t.Fatalf("change password: %v", err)
	}
	if reply, err := s.flows.SubmitPasswordLogin(ctx, owner.email, "wrong password"); err != nil || reply.Status != http.StatusBadRequest {
		t.Fatalf("failed login: err %v, status %d", err, reply.Status)
	}

	actor := found.ID.String()
	want := []guardEvent{
		{Action: "factor.changed", ActorID: actor, Detail: map[string]string{"method": "totp", "change": "added"}},
		{Action: "login.succeeded", ActorID: actor, Detail: map[string]string{"method": "password", "aal": "aal1"}},
		{Action: "login.succeeded", ActorID: actor, Detail: map[string]string{"method": "totp", "aal": "aal2"}},
		{Action: "password.changed", ActorID: actor, Detail: map[string]string{"method": "password"}},
		{Action: "login.failed", ActorID: actor, IdentifierHash: guardHash(owner.email), Detail: map[string]string{"method": "password"}},
	}
	got := guardEvents(t, s)
	if len(got) != len(want) {
		t.Fatalf("%d security events %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Action != w.Action || g.ActorID != w.ActorID || g.IdentifierHash != w.IdentifierHash {
			t.Errorf("event %d: %s by %q, hash %q; want %s by %q, hash %q", i, g.Action, g.ActorID, g.IdentifierHash, w.Action, w.ActorID, w.IdentifierHash)
		}
		if len(g.Detail) != len(w.Detail) {
			t.Errorf("event %d (%s): detail %v, want %v", i, g.Action, g.Detail, w.Detail)
		}
		for key, value := range w.Detail {
			if g.Detail[key] != value {
				t.Errorf("event %d (%s): detail %v, want %v", i, g.Action, g.Detail, w.Detail)
				break
			}
		}
		if g.IP != "127.0.0.1" || g.UserAgent == "" {
			t.Errorf("event %d (%s): IP %q, user agent %q; want 127.0.0.1 and the client's agent", i, g.Action, g.IP, g.UserAgent)
		}
		row, _ := json.Marshal(g)
		for _, secret := range []string{owner.password, newPassword, code, token, owner.secret} {
			if strings.Contains(string(row), secret) {
				t.Errorf("event %d (%s) contains a secret: %s", i, g.Action, row)
			}
		}
	}
}

// guardServer starts a test server whose runtime database connections have
// ended before tenanttest drops its database.
//
// tenanttest drops the database WITH (FORCE) right after closing the
// runtime pool, as the migration owner. A runtime-role backend that is still
// exiting then makes the drop fail ("must be a member of the role whose
// process is being terminated"), so this waits for those backends to end.
func guardServer(t *testing.T) *testServer {
	t.Helper()
	s := newTestServer(t)
	t.Cleanup(func() {
		s.db.App.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			var others int
			err := s.db.Owner.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND usename <> current_user`).Scan(&others)
			if err != nil || others == 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return s
}

// guardEvent is one row of security_events.
type guardEvent struct {
	Action         string
	ActorID        string
	IdentifierHash string
	IP             string
	UserAgent      string
	Detail         map[string]string
}

// guardEvents reads every platform security event in insertion order.
func guardEvents(t *testing.T, s *testServer) []guardEvent {
	t.Helper()
	rows, err := s.db.Owner.Query(context.Background(), `
		SELECT action, COALESCE(actor_id::text, ''), COALESCE(identifier_hash, ''), ip, user_agent, detail
		FROM security_events ORDER BY id`)
	if err != nil {
		t.Fatalf("read security events: %v", err)
	}
	defer rows.Close()
	var events []guardEvent
	for rows.Next() {
		var e guardEvent
		if err := rows.Scan(&e.Action, &e.ActorID, &e.IdentifierHash, &e.IP, &e.UserAgent, &e.Detail); err != nil {
			t.Fatalf("scan security event: %v", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read security events: %v", err)
	}
	return events
}

func guardHash(email string) string {
	sum := sha256.Sum256([]byte(identity.NormaliseEmail(email)))
	return hex.EncodeToString(sum[:])
}

func guardAdminURL(t *testing.T) string {
	t.Helper()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return cfg.KratosAdminURL
}

// guardPasswordLogin signs in with a password and returns the AAL1 token.
func guardPasswordLogin(t *testing.T, s *testServer, email, password string) string {
	t.Helper()
	token, err := s.flows.LogIn(context.Background(), email, password)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	return token
}

// guardAwayFromStepEdge waits until the current 30-second TOTP step has
// run for at least margin and has at least margin left.
func guardAwayFromStepEdge(margin time.Duration) {
	const step = 30 * time.Second
	for {
		into := time.Duration(time.Now().UnixNano()) % step
		if into >= margin && into <= step-margin {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// guardBrowserLogin signs in as a browser does: it opens a browser login
// flow, posts the HTML form without asking for JSON, and reads the flow
// that the login page would then show. It returns the status and Location
// of the form post, the flow as JSON and its id.
func guardBrowserLogin(t *testing.T, s *testServer, email, password string) (int, string, []byte, string) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookie jar: %v", err)
	}
	browser := &http.Client{
		Jar:           jar,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	getFlow := func(path string) []byte {
		request, _ := http.NewRequest(http.MethodGet, s.url+"/.ory"+path, nil)
		request.Header.Set("Accept", "application/json")
		response, err := browser.Do(request)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer response.Body.Close()
		var body json.RawMessage
		if err := json.NewDecoder(response.Body).Decode(&body); err != nil || response.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, err %v", path, response.StatusCode, err)
		}
		return body
	}

	var flow struct {
		ID string `json:"id"`
		UI struct {
			Nodes []struct {
				Attributes struct {
					Name  string `json:"name"`
					Value any    `json:"value"`
				} `json:"attributes"`
			} `json:"nodes"`
		} `json:"ui"`
	}
	if err := json.Unmarshal(getFlow("/self-service/login/browser"), &flow); err != nil {
		t.Fatalf("decode browser login flow: %v", err)
	}
	form := url.Values{"method": {"password"}, "identifier": {email}, "password": {password}}
	for _, node := range flow.UI.Nodes {
		if node.Attributes.Name == "csrf_token" {
			form.Set("csrf_token", node.Attributes.Value.(string))
		}
	}

	response, err := browser.PostForm(s.url+"/.ory/self-service/login?flow="+flow.ID, form)
	if err != nil {
		t.Fatalf("post login form: %v", err)
	}
	response.Body.Close()
	for _, cookie := range response.Cookies() {
		if cookie.Name == identity.SessionCookie {
			t.Errorf("failed browser login set the session cookie")
		}
	}
	return response.StatusCode, response.Header.Get("Location"), getFlow("/self-service/login/flows?id=" + flow.ID), flow.ID
}

// guardNormalise replaces what differs between two failed logins by design,
// the flow id, the submitted identifier, the CSRF token and the timestamps,
// so the rest can be compared byte for byte.
func guardNormalise(t *testing.T, body []byte, flowID, identifier string) string {
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
