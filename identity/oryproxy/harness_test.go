package oryproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/identity/selfservice"
	"vetvault/tenants/tenanttest"
)

// The tests run the proxy in-process in front of the real Kratos that
// `go tool task test` starts, with a fresh database per test.

func kratosPublicURL() string { return envOr("VETVAULT_KRATOS_PUBLIC_URL", "http://127.0.0.1:4433") }
func kratosAdminURL() string  { return envOr("VETVAULT_KRATOS_ADMIN_URL", "http://127.0.0.1:4434") }

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// recorder is an identity.EventRecorder that keeps events in memory, or
// fails every write when failing is set.
type recorder struct {
	mu      sync.Mutex
	events  []identity.Event
	failing bool
}

func (r *recorder) Record(_ context.Context, event identity.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failing {
		return errors.New("audit trail unavailable")
	}
	r.events = append(r.events, event)
	return nil
}

func (r *recorder) of(action identity.Action) []identity.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found []identity.Event
	for _, event := range r.events {
		if event.Action == action {
			found = append(found, event)
		}
	}
	return found
}

func (r *recorder) all() []identity.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]identity.Event(nil), r.events...)
}

// clock is a settable clock for the limit windows and used-code records.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type harness struct {
	t        *testing.T
	db       *tenanttest.Database
	url      string
	client   *http.Client
	flows    *selfservice.Client
	events   *recorder
	clock    *clock
	admin    *identity.Admin
	sessions *identity.Sessions
}

// newHarness serves a proxy with options on a fresh database. To keep the
// tests fast, failed logins are not delayed unless options set a floor.
func newHarness(t *testing.T, options ...Option) *harness {
	t.Helper()
	return newHarnessOn(t, newDatabase(t), &clock{now: time.Now()}, options...)
}

// newDatabase returns a fresh test database whose runtime connections have
// ended before tenanttest drops it.
//
// tenanttest drops the database WITH (FORCE) right after closing the
// runtime pool, as the migration owner. A runtime-role backend that is still
// exiting then makes the drop fail ("must be a member of the role whose
// process is being terminated"), so this waits for those backends to end.
func newDatabase(t *testing.T) *tenanttest.Database {
	t.Helper()
	db := tenanttest.New(t)
	t.Cleanup(func() {
		db.App.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			var others int
			err := db.Owner.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND usename <> current_user`).Scan(&others)
			if err != nil || others == 0 {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return db
}

// newHarnessOn serves another proxy instance on db, sharing its counters.
func newHarnessOn(t *testing.T, db *tenanttest.Database, c *clock, options ...Option) *harness {
	t.Helper()
	client := &http.Client{Timeout: 15 * time.Second}
	h := &harness{
		t:        t,
		db:       db,
		client:   client,
		events:   &recorder{},
		clock:    c,
		admin:    identity.NewAdmin(kratosAdminURL(), client),
		sessions: identity.NewSessions(kratosPublicURL(), client),
	}

	options = append([]Option{WithClock(c.Now), WithFailedLoginFloor(0)}, options...)
	proxy, err := New(Deps{
		KratosPublicURL: kratosPublicURL(),
		DB:              db.App,
		Admin:           h.admin,
		Sessions:        h.sessions,
		Events:          h.events,
		Log:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, options...)
	if err != nil {
		t.Fatalf("new proxy: %v", err)
	}

	mux := http.NewServeMux()
	mux.Handle(Prefix+"/", proxy)
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	h.url = server.URL
	h.flows = selfservice.New(server.URL+Prefix, client)
	return h
}

// testLimits are loose limits that tests tighten one at a time.
func testLimits() Limits {
	loose := Limit{Attempts: 100, Window: time.Minute}
	return Limits{LoginPerIdentifier: loose, LoginPerIP: loose, CodePerFlow: loose, CodePerIP: loose}
}

// person is a registered identity with its session token.
type person struct {
	id                             uuid.UUID
	email, password, secret, token string
}

// signUp registers a new identity through the proxy and, when enrol is set,
// adds TOTP, which raises the registration session to AAL2.
func (h *harness) signUp(enrol bool) person {
	h.t.Helper()
	ctx := context.Background()
	p := person{email: "guard-" + strings.ToLower(rand.Text()[:10]) + "@vetvault.test", password: rand.Text()}
	var err error
	if p.token, err = h.flows.Register(ctx, p.email, p.password); err != nil {
		h.t.Fatalf("register: %v", err)
	}
	if enrol {
		if p.secret, err = h.flows.EnrolTOTP(ctx, p.token); err != nil {
			h.t.Fatalf("enrol TOTP: %v", err)
		}
	}
	found, err := h.admin.FindByEmail(ctx, p.email)
	if err != nil {
		h.t.Fatalf("find registered identity: %v", err)
	}
	p.id = found.ID
	return p
}

func (h *harness) login(email, password string) selfservice.Reply {
	h.t.Helper()
	reply, err := h.flows.SubmitPasswordLogin(context.Background(), email, password)
	if err != nil {
		h.t.Fatalf("submit login: %v", err)
	}
	return reply
}

// post sends body to path under the proxy with contentType and returns the
// response with its body read.
func (h *harness) post(path, contentType string, body []byte) (*http.Response, []byte) {
	h.t.Helper()
	request, err := http.NewRequest(http.MethodPost, h.url+Prefix+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	request.Header.Set("Content-Type", contentType)
	request.Header.Set("Accept", "application/json")
	response, err := h.client.Do(request)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	defer response.Body.Close()
	data, err := io.ReadAll(response.Body)
	if err != nil {
		h.t.Fatalf("read response: %v", err)
	}
	return response, data
}

// apiLoginFlow creates an API login flow and returns its id.
func (h *harness) apiLoginFlow() string {
	h.t.Helper()
	response, err := h.client.Get(h.url + Prefix + "/self-service/login/api")
	if err != nil {
		h.t.Fatalf("create login flow: %v", err)
	}
	defer response.Body.Close()
	var flow struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(response.Body).Decode(&flow); err != nil || flow.ID == "" {
		h.t.Fatalf("decode login flow: %v", err)
	}
	return flow.ID
}

// problemOf decodes an RFC 9457 problem, failing the test when the response
// is not one.
func problemOf(t *testing.T, header http.Header, body []byte) problem {
	t.Helper()
	if ct := header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json; body %s", ct, body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", body, err)
	}
	return p
}

// browser signs in through browser flows the way an HTML page does: form
// posts with the CSRF token, cookies in a jar, redirects not followed.
type browser struct {
	h    *harness
	http *http.Client
}

func (h *harness) newBrowser() *browser {
	h.t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatalf("cookie jar: %v", err)
	}
	return &browser{h: h, http: &http.Client{
		Jar:           jar,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// submit opens a browser login flow with query (such as "aal=aal2"), posts
// form to it with the flow's CSRF token, and returns the response to the
// post with its body read.
func (b *browser) submit(query string, form url.Values) (*http.Response, []byte) {
	t := b.h.t
	t.Helper()
	request, _ := http.NewRequest(http.MethodGet, b.h.url+Prefix+"/self-service/login/browser?"+query, nil)
	request.Header.Set("Accept", "application/json")
	response, err := b.http.Do(request)
	if err != nil {
		t.Fatalf("create browser login flow: %v", err)
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
	err = json.NewDecoder(response.Body).Decode(&flow)
	response.Body.Close()
	if err != nil || flow.ID == "" {
		t.Fatalf("decode browser login flow: status %d, err %v", response.StatusCode, err)
	}
	for _, node := range flow.UI.Nodes {
		if node.Attributes.Name == "csrf_token" {
			form.Set("csrf_token", node.Attributes.Value.(string))
		}
	}

	response, err = b.http.PostForm(b.h.url+Prefix+"/self-service/login?flow="+flow.ID, form)
	if err != nil {
		t.Fatalf("post login form: %v", err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatalf("read login response: %v", err)
	}
	return response, body
}

// sessionCookie returns the browser's session cookie for the proxy's host.
func (b *browser) sessionCookie() identity.Credentials {
	u, _ := url.Parse(b.h.url)
	for _, cookie := range b.http.Jar.Cookies(u) {
		if cookie.Name == identity.SessionCookie {
			return identity.Credentials{Cookie: cookie.String()}
		}
	}
	return identity.Credentials{}
}
