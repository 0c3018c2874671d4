package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"vetvault/identity/selfservice"
	"vetvault/identity/sessioncache"
	"vetvault/tenants/tenanttest"
)

// The end-to-end tests run the whole server in-process against the real
// PostgreSQL, Kratos and Keto that `go tool task test` starts. Kratos is
// reached through the server's own /.ory proxy, as a client would.

type testServer struct {
	t        *testing.T
	url      string
	flows    *selfservice.Client
	client   *http.Client
	db       *tenanttest.Database
	sessions *sessioncache.Cache
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	t.Setenv("VETVAULT_ENV", "dev")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	db := tenanttest.New(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The session cache runs with its listener, as in production, so the
	// tests see revocations only through the platform's invalidations.
	sessions := newSessionCache(cfg, db.App, log)
	ctx, stop := context.WithCancel(context.Background())
	listened := make(chan error, 1)
	go func() { listened <- sessions.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-listened
	})
	for deadline := time.Now().Add(10 * time.Second); !sessions.Listening(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("session cache listener not ready within 10 s")
		}
	}

	handler, err := newHandler(cfg, db.App, sessions, log)
	if err != nil {
		t.Fatalf("build handler: %v", err)
	}
	server := httptest.NewServer(handler)
	t.Cleanup(server.Close)
	client := &http.Client{Timeout: 15 * time.Second}
	return &testServer{t: t, url: server.URL, flows: selfservice.New(server.URL+"/.ory", client), client: client, db: db, sessions: sessions}
}

// account is a signed-up person with a session token.
type account struct {
	email, password, secret, token string
}

// signUp registers a new identity and, when enrol is set, adds TOTP, which
// raises the session to AAL2.
func (s *testServer) signUp(enrol bool) account {
	s.t.Helper()
	ctx := context.Background()
	person := account{
		email:    "owner-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test",
		password: rand.Text(),
	}
	var err error
	person.token, err = s.flows.Register(ctx, person.email, person.password)
	if err != nil {
		s.t.Fatalf("register: %v", err)
	}
	if enrol {
		person.secret, err = s.flows.EnrolTOTP(ctx, person.token)
		if err != nil {
			s.t.Fatalf("enrol TOTP: %v", err)
		}
	}
	return person
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func (r response) json(t *testing.T, into any) {
	t.Helper()
	if err := json.Unmarshal(r.body, into); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem is an RFC 9457 problem details body as Huma writes it.
type problem struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Errors []struct {
		Location string `json:"location"`
		Message  string `json:"message"`
	} `json:"errors"`
}

func (s *testServer) do(method, path, token string, body []byte, header ...string) response {
	s.t.Helper()
	request, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatalf("new request: %v", err)
	}
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		request.Header.Set(header[i], header[i+1])
	}
	resp, err := s.client.Do(request)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, body: data, header: resp.Header}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return data
}

type clinicBody struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Branches []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"branches"`
}

func (s *testServer) createClinic(token, name string) clinicBody {
	s.t.Helper()
	r := s.do(http.MethodPost, "/v1/clinics", token, mustJSON(s.t, map[string]string{"name": name, "branch_name": "Indiranagar"}))
	if r.status != http.StatusCreated {
		s.t.Fatalf("create clinic: status %d, body %s", r.status, r.body)
	}
	var clinic clinicBody
	r.json(s.t, &clinic)
	return clinic
}

func booking(branchID string) map[string]any {
	return map[string]any{
		"branch_id":        branchID,
		"pet_name":         "Coco",
		"species":          "Dog",
		"pet_parent_name":  "Test Parent",
		"pet_parent_phone": "+919812345678",
		"starts_at":        "2026-12-07T09:20:00+05:30",
		"duration_minutes": 20,
		"reason":           "Annual vaccination",
	}
}

type appointmentList struct {
	Appointments []struct {
		ID       string    `json:"id"`
		PetName  string    `json:"pet_name"`
		StartsAt time.Time `json:"starts_at"`
	} `json:"appointments"`
}

func TestOwnerBooksAppointmentsEndToEnd(t *testing.T) {
	s := newTestServer(t)
	owner := s.signUp(true)

	me := s.do(http.MethodGet, "/v1/me", owner.token, nil)
	if me.status != http.StatusOK {
		t.Fatalf("GET /v1/me: status %d, body %s", me.status, me.body)
	}
	var meBody struct {
		Email string `json:"email"`
		AAL   string `json:"aal"`
	}
	me.json(t, &meBody)
	if meBody.AAL != "aal2" {
		t.Errorf("aal after TOTP enrolment = %q, want aal2", meBody.AAL)
	}
	if meBody.Email != owner.email {
		t.Errorf("email = %q, want %q", meBody.Email, owner.email)
	}

	clinic := s.createClinic(owner.token, "Test Pet Clinic")
	if len(clinic.Branches) != 1 {
		t.Fatalf("new clinic has %d branches, want 1", len(clinic.Branches))
	}
	base := "/v1/clinics/" + clinic.ID + "/appointments"

	booked := s.do(http.MethodPost, base, owner.token, mustJSON(t, booking(clinic.Branches[0].ID)))
	if booked.status != http.StatusCreated {
		t.Fatalf("book: status %d, body %s", booked.status, booked.body)
	}
	var appointment struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		StartsAt string `json:"starts_at"`
	}
	booked.json(t, &appointment)
	if appointment.Status != "booked" {
		t.Errorf("status = %q, want booked", appointment.Status)
	}
	if got, want := booked.header.Get("Location"), base+"/"+appointment.ID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}

	list := s.do(http.MethodGet, base+"?date=2026-12-07", owner.token, nil)
	if list.status != http.StatusOK {
		t.Fatalf("list: status %d, body %s", list.status, list.body)
	}
	var listed appointmentList
	list.json(t, &listed)
	if len(listed.Appointments) != 1 || listed.Appointments[0].ID != appointment.ID {
		t.Errorf("list for the day = %s, want the one booked appointment", list.body)
	}
	if other := s.do(http.MethodGet, base+"?date=2026-12-08", owner.token, nil); !strings.Contains(string(other.body), `"appointments":[]`) {
		t.Errorf("list for the next day = %s, want no appointments", other.body)
	}

	got := s.do(http.MethodGet, base+"/"+appointment.ID, owner.token, nil)
	if got.status != http.StatusOK {
		t.Errorf("get: status %d, body %s", got.status, got.body)
	}

	meAgain := s.do(http.MethodGet, "/v1/me", owner.token, nil)
	if !strings.Contains(string(meAgain.body), clinic.ID) || !strings.Contains(string(meAgain.body), `"owner"`) {
		t.Errorf("/v1/me after creating a clinic = %s, want the clinic with the owner role", meAgain.body)
	}

	t.Run("another clinic's owner gets 404", func(t *testing.T) {
		intruder := s.signUp(true)
		own := s.createClinic(intruder.token, "Other Clinic")
		checks := []struct {
			name   string
			method string
			path   string
			body   []byte
		}{
			{"read clinic", http.MethodGet, "/v1/clinics/" + clinic.ID, nil},
			{"list", http.MethodGet, base, nil},
			{"read appointment", http.MethodGet, base + "/" + appointment.ID, nil},
			{"book into it", http.MethodPost, base, mustJSON(t, booking(clinic.Branches[0].ID))},
			{"book with own branch", http.MethodPost, base, mustJSON(t, booking(own.Branches[0].ID))},
		}
		for _, c := range checks {
			r := s.do(c.method, c.path, intruder.token, c.body)
			if r.status != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404; body %s", c.name, r.status, r.body)
			}
		}
		// The intruder's own clinic cannot reach the first clinic's appointment either.
		r := s.do(http.MethodGet, "/v1/clinics/"+own.ID+"/appointments/"+appointment.ID, intruder.token, nil)
		if r.status != http.StatusNotFound {
			t.Errorf("read through own clinic: status %d, want 404", r.status)
		}
		var after appointmentList
		s.do(http.MethodGet, base, owner.token, nil).json(t, &after)
		if len(after.Appointments) != 1 {
			t.Errorf("first clinic has %d appointments after the intruder's attempts, want 1", len(after.Appointments))
		}
	})

	t.Run("password-only session gets 403", func(t *testing.T) {
		token, err := s.flows.LogIn(context.Background(), owner.email, owner.password)
		if err != nil {
			t.Fatalf("log in with password: %v", err)
		}
		for _, path := range []string{"/v1/me", base, "/v1/clinics/" + clinic.ID} {
			r := s.do(http.MethodGet, path, token, nil)
			var p problem
			r.json(t, &p)
			if r.status != http.StatusForbidden {
				t.Errorf("GET %s: status %d, want 403", path, r.status)
			}
			if !strings.Contains(p.Detail, "second factor") {
				t.Errorf("GET %s: detail %q, want it to say a second factor is needed", path, p.Detail)
			}
		}

		// A TOTP code, one step ahead in case enrolment used the current one,
		// raises the same session to AAL2.
		raised, err := s.flows.CompleteSecondFactor(context.Background(), token, owner.secret, time.Now().Add(30*time.Second))
		if err != nil {
			t.Fatalf("complete second factor: %v", err)
		}
		if r := s.do(http.MethodGet, base, raised, nil); r.status != http.StatusOK {
			t.Errorf("list after TOTP login: status %d, body %s", r.status, r.body)
		}
	})

	t.Run("identity without second factor", func(t *testing.T) {
		newcomer := s.signUp(false)
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/v1/me"},
			{http.MethodPost, "/v1/clinics"},
		} {
			r := s.do(c.method, c.path, newcomer.token, mustJSON(t, map[string]string{"name": "No MFA Clinic", "branch_name": "Main"}))
			var p problem
			r.json(t, &p)
			if r.status != http.StatusForbidden || !strings.Contains(p.Detail, "second factor") {
				t.Errorf("%s %s: status %d, detail %q; want 403 asking for a second factor", c.method, c.path, r.status, p.Detail)
			}
			if !strings.Contains(r.header.Get("Link"), "settings") {
				t.Errorf("%s %s: Link %q, want a link to enrolment", c.method, c.path, r.header.Get("Link"))
			}
		}
	})

	t.Run("no session gets 401", func(t *testing.T) {
		for _, token := range []string{"", "not-a-real-session-token"} {
			r := s.do(http.MethodGet, "/v1/me", token, nil)
			if r.status != http.StatusUnauthorized {
				t.Errorf("token %q: status %d, want 401", token, r.status)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("token %q: Content-Type %q, want application/problem+json", token, ct)
			}
		}
	})
}

func TestBookingBadInputWritesNothing(t *testing.T) {
	s := newTestServer(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Validation Clinic")
	base := "/v1/clinics/" + clinic.ID + "/appointments"
	branch := clinic.Branches[0].ID

	with := func(key string, value any) []byte {
		body := booking(branch)
		if value == nil {
			delete(body, key)
		} else {
			body[key] = value
		}
		return mustJSON(t, body)
	}
	huge := booking(branch)
	huge["reason"] = strings.Repeat("x", 20<<10)

	tests := []struct {
		name       string
		body       []byte
		wantStatus int
		wantField  string // "" when no single field is at fault
	}{
		{"unknown field", with("vet_notes", "secret"), http.StatusUnprocessableEntity, "body.vet_notes"},
		{"missing pet name", with("pet_name", nil), http.StatusUnprocessableEntity, "body.pet_name"},
		{"missing phone", with("pet_parent_phone", nil), http.StatusUnprocessableEntity, "body.pet_parent_phone"},
		{"phone not E.164", with("pet_parent_phone", "98123 45678"), http.StatusUnprocessableEntity, "body.pet_parent_phone"},
		{"phone number invalid", with("pet_parent_phone", "+910000000000"), http.StatusUnprocessableEntity, "body.pet_parent_phone"},
		{"zero duration", with("duration_minutes", 0), http.StatusUnprocessableEntity, "body.duration_minutes"},
		{"longer than a day", with("duration_minutes", 1441), http.StatusUnprocessableEntity, "body.duration_minutes"},
		{"start without offset", with("starts_at", "2026-12-07 09:00"), http.StatusUnprocessableEntity, "body.starts_at"},
		{"unknown branch", with("branch_id", "018f0000-0000-7000-8000-000000000000"), http.StatusUnprocessableEntity, "body.branch_id"},
		{"not JSON", []byte("{"), http.StatusBadRequest, ""},
		{"oversized body", mustJSON(t, huge), http.StatusRequestEntityTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(http.MethodPost, base, owner.token, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.wantStatus, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			if strings.Contains(string(r.body), "Test Parent") {
				t.Errorf("problem %s echoes the pet parent's name", r.body)
			}
			if tt.wantField == "" {
				return
			}
			var p problem
			r.json(t, &p)
			found := false
			for _, e := range p.Errors {
				found = found || e.Location == tt.wantField
			}
			if !found {
				t.Errorf("problem %s does not name %s", r.body, tt.wantField)
			}
		})
	}

	var listed appointmentList
	s.do(http.MethodGet, base, owner.token, nil).json(t, &listed)
	if len(listed.Appointments) != 0 {
		t.Errorf("%d appointments stored after only bad requests, want 0", len(listed.Appointments))
	}
}

func TestInternalErrorHidesDetail(t *testing.T) {
	s := newTestServer(t)
	owner := s.signUp(true)
	clinic := s.createClinic(owner.token, "Failing Clinic")

	// Closing the runtime pool makes every store call fail inside the server.
	s.db.App.Close()
	r := s.do(http.MethodGet, "/v1/clinics/"+clinic.ID+"/appointments", owner.token, nil)
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500; body %s", r.status, r.body)
	}
	var p problem
	r.json(t, &p)
	if !strings.HasPrefix(p.Detail, "internal error") {
		t.Errorf("detail %q, want it to start with \"internal error\"", p.Detail)
	}
	if id := r.header.Get("X-Request-Id"); id == "" || !strings.Contains(p.Detail, id) {
		t.Errorf("detail %q does not quote the request id %q", p.Detail, id)
	}
	for _, leak := range []string{"closed", "pool", "sql", "pgx"} {
		if strings.Contains(strings.ToLower(string(r.body)), leak) {
			t.Errorf("500 body %s carries internal text %q", r.body, leak)
		}
	}
}

func TestUnmatchedAPIPathsGetProblems(t *testing.T) {
	s := newTestServer(t)
	tests := []struct {
		method, path string
		wantStatus   int
		wantAllow    string
	}{
		{http.MethodGet, "/v1/no-such-thing", http.StatusNotFound, ""},
		{http.MethodDelete, "/v1/me", http.StatusMethodNotAllowed, "GET"},
	}
	for _, tt := range tests {
		r := s.do(tt.method, tt.path, "", nil)
		if r.status != tt.wantStatus {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, r.status, tt.wantStatus)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s %s: Content-Type %q, want application/problem+json", tt.method, tt.path, ct)
		}
		if got := r.header.Get("Allow"); got != tt.wantAllow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.wantAllow)
		}
	}
}

func TestPlatformEndpoints(t *testing.T) {
	s := newTestServer(t)
	checks := []struct {
		path string
		want string
	}{
		{"/healthz", "ok"},
		{"/readyz", "keto: ok"},
		{"/openapi.json", `"/v1/clinics/{clinicID}/appointments"`},
		{"/docs", "<html"},
		{"/", "VetVault"},
		{"/.ory/health/alive", "ok"},
	}
	for _, c := range checks {
		r := s.do(http.MethodGet, c.path, "", nil)
		if r.status != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", c.path, r.status)
		}
		if !strings.Contains(string(r.body), c.want) {
			t.Errorf("GET %s: body does not contain %q", c.path, c.want)
		}
	}
}
