package oryproxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"vetvault/identity"
)

func TestOverLimit(t *testing.T) {
	limit := Limit{Attempts: 10, Window: 10 * time.Minute}
	start := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		elapsed    time.Duration
		current    int
		previous   int
		wantOver   bool
		wantRetryS int
	}{
		{"first attempt", 0, 1, 0, false, 0},
		{"last allowed attempt", 5 * time.Minute, 10, 0, false, 0},
		// counted 10 of 10 in this window: the next fits once this window
		// has faded by 1/10 into the next one, 5 + 1 minutes from now.
		{"one over in this window", 5 * time.Minute, 11, 0, true, 360},
		// estimate 10·0.5 + 6 = 11: the previous window must fade to 4.
		{"previous window still weighs", 5 * time.Minute, 6, 10, true, 60},
		{"previous window faded enough", 6 * time.Minute, 6, 10, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, over := overLimit(limit, start.Add(tt.elapsed), start, tt.current, tt.previous)
			if over != tt.wantOver {
				t.Fatalf("over = %v, want %v", over, tt.wantOver)
			}
			if got := int(wait / time.Second); got != tt.wantRetryS {
				t.Errorf("retry after %d s, want %d s", got, tt.wantRetryS)
			}
		})
	}
}

func TestLoginLimitPerIdentifier(t *testing.T) {
	limits := testLimits()
	limits.LoginPerIdentifier = Limit{Attempts: 3, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))
	target := h.signUp(false)

	for i := range 3 {
		if reply := h.login(target.email, "wrong password"); reply.Status != http.StatusBadRequest {
			t.Fatalf("failed login %d: status %d, want 400; body %s", i+1, reply.Status, reply.Body)
		}
	}

	// Even the right password is not forwarded once the limit is reached.
	limited := h.login(strings.ToUpper(target.email), target.password)
	if limited.Status != http.StatusTooManyRequests {
		t.Fatalf("login over the limit: status %d, want 429; body %s", limited.Status, limited.Body)
	}
	retry, err := strconv.Atoi(limited.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 120 {
		t.Errorf("Retry-After %q, want whole seconds within two windows", limited.Header.Get("Retry-After"))
	}
	p := problemOf(t, limited.Header, limited.Body)
	if p.Status != http.StatusTooManyRequests || !strings.Contains(p.Detail, "for this account") {
		t.Errorf("problem %+v, want a 429 about this account", p)
	}
	if limited.SessionToken() != "" {
		t.Error("a limited login returned a session token")
	}
	if got := len(h.events.of(identity.ActionLoginSucceeded)); got != 0 {
		t.Errorf("%d successful logins recorded, want 0", got)
	}

	t.Run("another account from the same address", func(t *testing.T) {
		other := h.signUp(false)
		if reply := h.login(other.email, other.password); reply.Status != http.StatusOK {
			t.Errorf("status %d, want 200; body %s", reply.Status, reply.Body)
		}
	})

	t.Run("after the window", func(t *testing.T) {
		h.clock.Advance(2 * time.Minute)
		if reply := h.login(target.email, target.password); reply.Status != http.StatusOK {
			t.Errorf("status %d, want 200; body %s", reply.Status, reply.Body)
		}
	})
}

func TestLoginLimitPerIP(t *testing.T) {
	limits := testLimits()
	limits.LoginPerIP = Limit{Attempts: 2, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))

	for i := range 2 {
		if reply := h.login("nobody-"+strconv.Itoa(i)+"@vetvault.test", "guess"); reply.Status != http.StatusBadRequest {
			t.Fatalf("failed login %d: status %d, want 400", i+1, reply.Status)
		}
	}
	limited := h.login("nobody-else@vetvault.test", "guess")
	if limited.Status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429; body %s", limited.Status, limited.Body)
	}
	if p := problemOf(t, limited.Header, limited.Body); !strings.Contains(p.Detail, "from your network") {
		t.Errorf("detail %q, want it to name the network", p.Detail)
	}
}

func TestSuccessfulLoginsDoNotCountPerIdentifier(t *testing.T) {
	limits := testLimits()
	limits.LoginPerIdentifier = Limit{Attempts: 2, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))
	target := h.signUp(false)

	for i := range 3 {
		if reply := h.login(target.email, target.password); reply.Status != http.StatusOK {
			t.Fatalf("login %d: status %d, want 200; body %s", i+1, reply.Status, reply.Body)
		}
	}
	for i := range 2 {
		if reply := h.login(target.email, "wrong password"); reply.Status != http.StatusBadRequest {
			t.Fatalf("failed login %d: status %d, want 400", i+1, reply.Status)
		}
	}
	if reply := h.login(target.email, target.password); reply.Status != http.StatusTooManyRequests {
		t.Errorf("login after two failures: status %d, want 429", reply.Status)
	}
}

func TestLimitsSharedAcrossInstances(t *testing.T) {
	limits := testLimits()
	limits.LoginPerIdentifier = Limit{Attempts: 2, Window: time.Minute}
	first := newHarness(t, WithLimits(limits))
	second := newHarnessOn(t, first.db, first.clock, WithLimits(limits))
	email := "shared-target@vetvault.test"

	if reply := first.login(email, "guess one"); reply.Status != http.StatusBadRequest {
		t.Fatalf("first instance: status %d, want 400", reply.Status)
	}
	if reply := second.login(email, "guess two"); reply.Status != http.StatusBadRequest {
		t.Fatalf("second instance: status %d, want 400", reply.Status)
	}
	if reply := first.login(email, "guess three"); reply.Status != http.StatusTooManyRequests {
		t.Errorf("third guess on the first instance: status %d, want 429", reply.Status)
	}
}

func TestCodeLimitPerSession(t *testing.T) {
	limits := testLimits()
	limits.CodePerFlow = Limit{Attempts: 2, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))
	target := h.signUp(true)
	ctx := context.Background()

	token, err := h.flows.LogIn(ctx, target.email, target.password)
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	valid, err := totp.GenerateCode(target.secret, time.Now())
	if err != nil {
		t.Fatalf("compute code: %v", err)
	}
	wrong := "000000"
	if valid == wrong {
		wrong = "111111"
	}

	// Each submission opens a new flow, so only the per-session count stops
	// the third.
	for i := range 2 {
		reply, err := h.flows.SubmitTOTPCode(ctx, token, wrong)
		if err != nil {
			t.Fatalf("submit wrong code: %v", err)
		}
		if reply.Status != http.StatusBadRequest {
			t.Fatalf("wrong code %d: status %d, want 400; body %s", i+1, reply.Status, reply.Body)
		}
	}
	reply, err := h.flows.SubmitTOTPCode(ctx, token, valid)
	if err != nil {
		t.Fatalf("submit valid code: %v", err)
	}
	if reply.Status != http.StatusTooManyRequests {
		t.Fatalf("third code: status %d, want 429; body %s", reply.Status, reply.Body)
	}
	if p := problemOf(t, reply.Header, reply.Body); !strings.Contains(p.Detail, "Too many code attempts") {
		t.Errorf("detail %q, want it to name code attempts", p.Detail)
	}
	if _, err := h.sessions.Verify(ctx, identity.Credentials{Token: token}); err == nil {
		t.Error("the session reached AAL2 through a limited code submission")
	}
}

func TestBodyGuards(t *testing.T) {
	h := newHarness(t)
	flowPath := func() string { return "/self-service/login?flow=" + h.apiLoginFlow() }

	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
		wantDetail  string
	}{
		{"body over the cap", "application/json", `{"method":"password","identifier":"` + strings.Repeat("a", 70<<10) + `"}`, http.StatusRequestEntityTooLarge, "larger than 64 KiB"},
		{"method twice in JSON", "application/json", `{"method":"totp","identifier":"x@vetvault.test","password":"p","method":"password"}`, http.StatusBadRequest, "repeats a field"},
		{"method in two cases", "application/json", `{"method":"totp","Method":"password"}`, http.StatusBadRequest, "repeats a field"},
		{"identifier twice in a form", "application/x-www-form-urlencoded", "method=password&identifier=a%40vetvault.test&identifier=b%40vetvault.test&password=p", http.StatusBadRequest, "repeats a field"},
		{"JSON that is not an object", "application/json", `["method","password"]`, http.StatusBadRequest, "malformed"},
		{"multipart form", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\npassword\r\n--x--\r\n", http.StatusUnsupportedMediaType, "x-www-form-urlencoded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			response, body := h.post(flowPath(), tt.contentType, []byte(tt.body))
			if response.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", response.StatusCode, tt.wantStatus, body)
			}
			if p := problemOf(t, response.Header, body); !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail %q, want it to contain %q", p.Detail, tt.wantDetail)
			}
		})
	}
}

func TestFormAndJSONCountedAlike(t *testing.T) {
	limits := testLimits()
	limits.LoginPerIdentifier = Limit{Attempts: 2, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))
	target := h.signUp(false)

	form := url.Values{"method": {"password"}, "identifier": {"  " + strings.ToUpper(target.email)}, "password": {"wrong password"}}
	response, body := h.post("/self-service/login?flow="+h.apiLoginFlow(), "application/x-www-form-urlencoded", []byte(form.Encode()))
	if response.StatusCode != http.StatusBadRequest {
		t.Fatalf("form login with a wrong password: status %d, want 400; body %s", response.StatusCode, body)
	}
	if reply := h.login(target.email, "wrong again"); reply.Status != http.StatusBadRequest {
		t.Fatalf("JSON login with a wrong password: status %d, want 400", reply.Status)
	}
	if reply := h.login(target.email, target.password); reply.Status != http.StatusTooManyRequests {
		t.Errorf("third login: status %d, want 429 after one form and one JSON failure", reply.Status)
	}

	t.Run("form body reaches Kratos intact", func(t *testing.T) {
		other := h.signUp(false)
		form := url.Values{"method": {"password"}, "identifier": {other.email}, "password": {other.password}}
		response, body := h.post("/self-service/login?flow="+h.apiLoginFlow(), "application/x-www-form-urlencoded", []byte(form.Encode()))
		if response.StatusCode != http.StatusOK || !strings.Contains(string(body), `"session_token"`) {
			t.Errorf("form login with the right password: status %d, want 200 with a session; body %s", response.StatusCode, body)
		}
	})
}

func TestRecoveryAndVerificationLimitPerFlow(t *testing.T) {
	limits := testLimits()
	limits.CodePerFlow = Limit{Attempts: 2, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))
	target := h.signUp(false)

	for _, flow := range []string{"recovery", "verification"} {
		t.Run(flow, func(t *testing.T) {
			response, err := h.client.Get(h.url + Prefix + "/self-service/" + flow + "/api")
			if err != nil {
				t.Fatalf("create %s flow: %v", flow, err)
			}
			var created struct {
				ID string `json:"id"`
			}
			err = json.NewDecoder(response.Body).Decode(&created)
			response.Body.Close()
			if err != nil || created.ID == "" {
				t.Fatalf("decode %s flow: status %d, err %v", flow, response.StatusCode, err)
			}
			path := "/self-service/" + flow + "?flow=" + created.ID

			submissions := []string{
				`{"method":"code","email":"` + target.email + `"}`,
				`{"method":"code","code":"000000"}`,
			}
			for i, body := range submissions {
				if response, body := h.post(path, "application/json", []byte(body)); response.StatusCode == http.StatusTooManyRequests {
					t.Fatalf("submission %d: status 429 within the limit; body %s", i+1, body)
				}
			}
			response, body := h.post(path, "application/json", []byte(`{"method":"code","code":"111111"}`))
			if response.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("third submission: status %d, want 429; body %s", response.StatusCode, body)
			}
			if p := problemOf(t, response.Header, body); !strings.Contains(p.Detail, "Too many code attempts") {
				t.Errorf("detail %q, want it to name code attempts", p.Detail)
			}
		})
	}
}

func TestGETSubmissionsLimited(t *testing.T) {
	limits := testLimits()
	limits.CodePerFlow = Limit{Attempts: 1, Window: time.Minute}
	h := newHarness(t, WithLimits(limits))

	response, err := h.client.Get(h.url + Prefix + "/self-service/verification/api")
	if err != nil {
		t.Fatalf("create verification flow: %v", err)
	}
	var flow struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(response.Body).Decode(&flow)
	response.Body.Close()
	if err != nil || flow.ID == "" {
		t.Fatalf("decode verification flow: status %d, err %v", response.StatusCode, err)
	}

	// Kratos v1.3.1 takes a verification code from a GET's query, as the
	// link in its email does.
	get := func(code string) *http.Response {
		t.Helper()
		request, _ := http.NewRequest(http.MethodGet, h.url+Prefix+"/self-service/verification?flow="+flow.ID+"&code="+code, nil)
		request.Header.Set("Accept", "application/json")
		// Kratos redirects to the verification page, which is not served here.
		noRedirects := &http.Client{
			Timeout:       15 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		response, err := noRedirects.Do(request)
		if err != nil {
			t.Fatalf("GET with a code: %v", err)
		}
		response.Body.Close()
		return response
	}
	if response := get("000000"); response.StatusCode == http.StatusTooManyRequests {
		t.Fatal("first code: status 429 within the limit")
	}
	if response := get("111111"); response.StatusCode != http.StatusTooManyRequests {
		t.Errorf("second code: status %d, want 429", response.StatusCode)
	}
}
