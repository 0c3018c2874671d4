// Package oryproxy serves Kratos's public API under Prefix on the app's own
// origin, so the session cookie stays first-party, and guards the
// submissions that can be brute-forced or abused:
//
//   - login, recovery, verification and second-factor code submissions are
//     rate-limited per client IP, per login identifier, per flow and per
//     session, with counters in PostgreSQL shared by every server instance.
//   - a password login of a deactivated identity gets the same response as
//     a wrong password or an unknown email. Every failed password login
//     also takes at least a fixed time, longer than Kratos's delay for an
//     unknown email, so that the timing does not single out known accounts.
//   - a TOTP code completes a sign-in once per identity, which Kratos v1.3.1
//     does not enforce itself.
//   - logins, failed logins, limits hit, reused codes and password and factor
//     changes are written to the audit trail, without secrets.
//
// Every other request passes through unchanged.
package oryproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/tenants"
)

// Prefix is the path under which the proxy serves Kratos's public API.
const Prefix = "/.ory"

// Admin is the part of the Kratos admin API the proxy uses: looking up the
// identity a login names, and revoking a session issued for a reused code.
// *identity.Admin implements it.
type Admin interface {
	FindByEmail(ctx context.Context, email string) (identity.Identity, error)
	RevokeSession(ctx context.Context, sessionID string) error
}

// SessionVerifier checks a session with Kratos. The proxy uses it to learn
// which session and identity a browser login created, since the redirect
// that ends a browser flow carries only the cookie. *identity.Sessions
// implements it.
type SessionVerifier interface {
	Verify(ctx context.Context, creds identity.Credentials) (identity.Session, error)
}

// SessionInvalidator drops an identity's cached sessions on every server
// instance.
type SessionInvalidator interface {
	Invalidate(ctx context.Context, identityID uuid.UUID) error
}

// Deps are the proxy's collaborators. All fields but Invalidator are
// required.
type Deps struct {
	// KratosPublicURL is Kratos's public API, for example
	// http://127.0.0.1:4433.
	KratosPublicURL string
	// DB stores the attempt counters and used TOTP codes.
	DB       *tenants.DB
	Admin    Admin
	Sessions SessionVerifier
	Events   identity.EventRecorder
	Log      *slog.Logger
	// Invalidator receives every session that Kratos ends through the
	// proxy (logout, a password change ending the other sessions, a
	// rejected TOTP code), so no server keeps such a session cached. Nil
	// when sessions are not cached.
	Invalidator SessionInvalidator
}

// Limits are the brute-force limits. Login limits count every login
// submission that is not a code. Code limits count second-factor codes,
// recovery and verification submissions.
type Limits struct {
	// LoginPerIdentifier counts password logins per normalised identifier,
	// whether or not an identity has it. A successful login takes its own
	// attempt back, so only failures accumulate.
	LoginPerIdentifier Limit
	// LoginPerIP counts every login submission from one client IP.
	LoginPerIP Limit
	// CodePerFlow counts code submissions per flow and, separately, per
	// session, so neither a new flow nor a new session resets the count
	// alone.
	CodePerFlow Limit
	// CodePerIP counts code submissions from one client IP.
	CodePerIP Limit
}

// DefaultLimits returns the limits the server runs with.
//
// Ten attempts per account in 15 minutes let a person who mistypes a
// password a few times sign in, while capping a guesser at under 1,000
// passwords a day per account. A longer lock-out would let anyone who knows
// a staff email lock that person out. Fifty per IP in 15 minutes leave
// room for a clinic whose staff share one office address, and still stop a
// spray across many accounts. A TOTP, recovery or verification code has six
// digits with at most three valid at once, so five tries per flow or session
// in 15 minutes give a guesser about a 1 in 67,000 chance per window, while
// a person rarely mistypes a code more than twice.
func DefaultLimits() Limits {
	const window = 15 * time.Minute
	return Limits{
		LoginPerIdentifier: Limit{Attempts: 10, Window: window},
		LoginPerIP:         Limit{Attempts: 50, Window: window},
		CodePerFlow:        Limit{Attempts: 5, Window: window},
		CodePerIP:          Limit{Attempts: 50, Window: window},
	}
}

// defaultFailedLoginFloor is the least time a failed password login takes.
// For an unknown identifier, Kratos v1.3.1 sleeps a random delay of up to
// 1 s (hashers.argon2.expected_duration plus expected_deviation, 500 ms each
// by default) instead of checking a password hash. Without a floor, the
// response time would distinguish an unknown email from a wrong password.
//
// NOTE: a password hash check slower than the floor (a high bcrypt cost on
// a slow machine) would still show in the timing. Measure the production
// hasher and raise the floor above it.
const defaultFailedLoginFloor = 1250 * time.Millisecond

// defaultMaxBody caps the request bodies the proxy reads. Kratos's own
// self-service bodies are a few hundred bytes, and a WebAuthn registration is
// the largest at a few KiB.
const defaultMaxBody = 64 << 10

// maxResponseBody caps the Kratos responses the proxy reads to inspect them.
// A flow with all its UI nodes is a few KiB.
const maxResponseBody = 1 << 20

// Option changes a default of New.
type Option func(*Proxy)

// WithLimits replaces DefaultLimits.
func WithLimits(limits Limits) Option {
	return func(p *Proxy) { p.limits = limits }
}

// WithClock sets the clock of the limit windows and used-code records.
func WithClock(now func() time.Time) Option {
	return func(p *Proxy) { p.now = now }
}

// WithMaxBody sets the largest request body, in bytes, the proxy accepts on
// a guarded path. A larger one gets 413.
func WithMaxBody(bytes int64) Option {
	return func(p *Proxy) { p.maxBody = bytes }
}

// WithFailedLoginFloor sets the least time a failed password login takes.
func WithFailedLoginFloor(d time.Duration) Option {
	return func(p *Proxy) { p.failedLoginFloor = d }
}

// Proxy is the guarded reverse proxy to Kratos's public API.
type Proxy struct {
	reverse          *httputil.ReverseProxy
	admin            Admin
	sessions         SessionVerifier
	events           identity.EventRecorder
	invalidator      SessionInvalidator
	log              *slog.Logger
	limits           Limits
	now              func() time.Time
	maxBody          int64
	failedLoginFloor time.Duration
	limiter          *limiter
	codes            *usedCodes
}

// New returns the proxy to the Kratos public API at deps.KratosPublicURL.
func New(deps Deps, options ...Option) (*Proxy, error) {
	target, err := url.Parse(deps.KratosPublicURL)
	if err != nil {
		return nil, fmt.Errorf("parse Kratos public URL: %w", err)
	}
	if deps.DB == nil || deps.Admin == nil || deps.Sessions == nil || deps.Events == nil || deps.Log == nil {
		return nil, errors.New("new Kratos proxy: DB, Admin, Sessions, Events and Log are required")
	}
	p := &Proxy{
		admin:            deps.Admin,
		sessions:         deps.Sessions,
		events:           deps.Events,
		invalidator:      deps.Invalidator,
		log:              deps.Log,
		limits:           DefaultLimits(),
		now:              time.Now,
		maxBody:          defaultMaxBody,
		failedLoginFloor: defaultFailedLoginFloor,
	}
	for _, option := range options {
		option(p)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}

	longest := max(p.limits.LoginPerIdentifier.Window, p.limits.LoginPerIP.Window,
		p.limits.CodePerFlow.Window, p.limits.CodePerIP.Window)
	p.limiter = &limiter{db: deps.DB, now: p.now, retention: 2 * longest}
	p.codes = &usedCodes{db: deps.DB, now: p.now}
	p.reverse = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = strings.TrimPrefix(r.In.URL.Path, Prefix)
			r.Out.URL.RawPath = ""
			r.SetXForwarded()
			if submissionFrom(r.In.Context()) != nil {
				// The proxy reads these responses, so it requests them
				// uncompressed.
				r.Out.Header.Del("Accept-Encoding")
			}
		},
		ModifyResponse: p.inspect,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.ErrorContext(r.Context(), "kratos proxy failed", "err", err)
			writeProblem(w, http.StatusBadGateway, msgUnavailable)
		},
	}
	return p, nil
}

func (p *Proxy) validate() error {
	limits := map[string]Limit{
		"LoginPerIdentifier": p.limits.LoginPerIdentifier,
		"LoginPerIP":         p.limits.LoginPerIP,
		"CodePerFlow":        p.limits.CodePerFlow,
		"CodePerIP":          p.limits.CodePerIP,
	}
	for name, limit := range limits {
		if err := limit.validate(name); err != nil {
			return err
		}
	}
	if p.maxBody < 1<<10 {
		return fmt.Errorf("max body of %d bytes is too small for Kratos's forms: allow at least 1 KiB", p.maxBody)
	}
	if p.now == nil {
		return errors.New("new Kratos proxy: the clock is nil")
	}
	return nil
}

// ServeHTTP forwards r to Kratos, first reading, limiting and possibly
// rewriting a submission to a guarded path.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Matching ignores case, so a case variant of a path cannot skip the
	// guard whatever Kratos's router does with it.
	path := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, Prefix), "/"))
	if path == logoutPath || path == logoutAPIPath {
		p.logout(w, r)
		return
	}
	flow, guarded := guardedPaths[path]
	if !guarded || (r.Method != http.MethodPost && r.Method != http.MethodGet) {
		p.reverse.ServeHTTP(w, r)
		return
	}

	started := time.Now()
	s, err := readSubmission(r, flow, p.maxBody)
	if err != nil {
		var rejected *bodyError
		if !errors.As(err, &rejected) {
			rejected = &bodyError{status: http.StatusBadRequest, detail: malformedBodyDetail(err)}
		}
		writeProblem(w, rejected.status, rejected.detail)
		return
	}
	s.started = started

	ctx := r.Context()
	v, err := p.limiter.take(ctx, p.limitKeys(s))
	if err != nil {
		p.log.ErrorContext(ctx, "sign-in limiter failed", "flow", string(s.flow), "err", err)
		writeProblem(w, http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	if v.limited {
		p.record(ctx, s, identity.Event{
			Action:         identity.ActionLoginRateLimited,
			IdentifierHash: identifierHash(s.identifier),
			Detail:         map[string]string{"flow": string(s.flow), "method": s.method, "limit": v.scope},
		})
		writeTooManyRequests(w, v.scope, v.retryAfter)
		return
	}
	s.counted = v.counted

	if s.passwordLogin() && s.identifier != "" {
		if err := p.hideDeactivated(ctx, r, s); err != nil {
			p.log.ErrorContext(ctx, "check login identity", "err", err)
			writeProblem(w, http.StatusServiceUnavailable, msgUnavailable)
			return
		}
	}

	p.reverse.ServeHTTP(w, r.WithContext(context.WithValue(ctx, submissionKey{}, s)))
}

// limitKeys returns the counters a submission is counted in, the narrowest
// first, so a 429 names the most specific limit hit.
func (p *Proxy) limitKeys(s *submission) []limitKey {
	var keys []limitKey
	switch {
	case s.codeSubmission():
		if s.sessionSecret != "" {
			keys = append(keys, limitKey{scopeCodeSession, s.sessionSecret, p.limits.CodePerFlow})
		}
		if s.flowID != "" {
			keys = append(keys, limitKey{scopeCodeFlow, s.flowID, p.limits.CodePerFlow})
		}
		keys = append(keys, limitKey{scopeCodeIP, s.ip, p.limits.CodePerIP})
	case s.passwordLogin():
		if s.identifier != "" {
			keys = append(keys, limitKey{scopeLoginIdentifier, s.identifier, p.limits.LoginPerIdentifier})
		}
		keys = append(keys, limitKey{scopeLoginIP, s.ip, p.limits.LoginPerIP})
	}
	return keys
}

// hideDeactivated makes Kratos respond to a password login of a
// deactivated identity exactly as it responds to a wrong password. Kratos
// v1.3.1 checks the password first and then rejects the inactive identity
// with a 401 that names it ("This account was disabled", or a redirect to
// the error page in a browser flow), which would confirm both the account
// and its password.
// Forwarding a password that cannot match instead lets Kratos produce its
// own invalid-credentials response and flow state, in whichever flow type
// and encoding the client used.
//
// NOTE: an identity deactivated between this lookup and Kratos's own check
// still gets Kratos's disabled response once. Catching that would need the
// response rewritten too.
func (p *Proxy) hideDeactivated(ctx context.Context, r *http.Request, s *submission) error {
	found, err := p.admin.FindByEmail(ctx, s.identifier)
	if errors.Is(err, identity.ErrIdentityNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s.knownIdentity = found.ID
	if found.Active {
		return nil
	}
	return s.replacePassword(r)
}

// submissionKey is the context key under which ServeHTTP hands the
// submission to inspect.
type submissionKey struct{}

func submissionFrom(ctx context.Context) *submission {
	s, _ := ctx.Value(submissionKey{}).(*submission)
	return s
}

// record writes event to the audit trail with the submission's IP and user
// agent. A failed write is logged and does not fail the request: the login
// itself already happened in Kratos.
func (p *Proxy) record(ctx context.Context, s *submission, event identity.Event) {
	event.IP = s.ip
	event.UserAgent = s.userAgent
	event.At = p.now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.events.Record(ctx, event); err != nil {
		p.log.ErrorContext(ctx, "record audit event", "action", string(event.Action), "err", err)
	}
}

// identifierHash returns the hex SHA-256 of a normalised identifier, or ""
// for none.
func identifierHash(normalised string) string {
	if normalised == "" {
		return ""
	}
	return sha256Hex(normalised)
}

// uuidOrNil parses id, returning uuid.Nil for an empty or malformed one.
func uuidOrNil(id string) uuid.UUID {
	parsed, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil
	}
	return parsed
}

// The logout paths: a browser follows the logout URL with the session
// cookie, an API client sends DELETE with its token in a JSON body.
const (
	logoutPath    = "/self-service/logout"
	logoutAPIPath = "/self-service/logout/api"
)

// logout forwards a logout to Kratos and then invalidates the cached
// sessions of the identity that signed out. The identity is read before
// forwarding, while the session still exists.
func (p *Proxy) logout(w http.ResponseWriter, r *http.Request) {
	creds := identity.CredentialsFromHeaders(r.Header)
	if r.Body != nil && r.Method == http.MethodDelete {
		body, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody))
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "unreadable logout request")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var logout struct {
			SessionToken string `json:"session_token"`
		}
		if json.Unmarshal(body, &logout) == nil && logout.SessionToken != "" {
			creds = identity.Credentials{Token: logout.SessionToken}
		}
	}

	signedOut := uuid.Nil
	if p.invalidator != nil {
		if session, err := p.sessions.Verify(r.Context(), creds); err == nil {
			signedOut = session.IdentityID
		}
	}
	p.reverse.ServeHTTP(w, r)
	if signedOut != uuid.Nil {
		p.invalidate(r.Context(), signedOut)
	}
}

// invalidate drops the cached sessions of identityID, logging a failure: the
// session cache's time-to-live still bounds how long a stale entry lives.
func (p *Proxy) invalidate(ctx context.Context, identityID uuid.UUID) {
	if p.invalidator == nil || identityID == uuid.Nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.invalidator.Invalidate(ctx, identityID); err != nil {
		p.log.ErrorContext(ctx, "invalidate cached sessions", "identity_id", identityID, "err", err)
	}
}
