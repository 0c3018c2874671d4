package oryproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
)

// kratosReply is the part of a Kratos self-service response the proxy
// reads: a completed login carries the session, a settings flow its state
// and identity, and an error may name the identity it concerns.
type kratosReply struct {
	Session *struct {
		ID       string `json:"id"`
		AAL      string `json:"authenticator_assurance_level"`
		Identity *struct {
			ID string `json:"id"`
		} `json:"identity"`
	} `json:"session"`
	State    any `json:"state"`
	Identity *struct {
		ID string `json:"id"`
	} `json:"identity"`
	Error *struct {
		Details struct {
			IdentityID string `json:"identity_id"`
		} `json:"details"`
	} `json:"error"`
}

// sessionFacts are the non-secret facts of the session a flow produced.
type sessionFacts struct {
	sessionID  string
	identityID uuid.UUID
	aal        string
}

// inspect runs on Kratos's response to a guarded submission before the
// client receives it. It audits the outcome, refunds the attempt of a
// successful login, and rejects a reused TOTP code. An error makes the
// reverse proxy return 502.
func (p *Proxy) inspect(resp *http.Response) error {
	s := submissionFrom(resp.Request.Context())
	if s == nil || resp.StatusCode >= http.StatusInternalServerError {
		return nil
	}
	if s.flow != flowLogin && s.flow != flowSettings {
		return nil
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read Kratos %s response: %w", s.flow, err)
	}
	if len(body) > maxResponseBody {
		return fmt.Errorf("read Kratos %s response: larger than %d bytes", s.flow, maxResponseBody)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))

	var reply kratosReply
	if mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mediaType == "application/json" {
		// A body that does not decode is a failure as far as the proxy can
		// tell, which is how it is then treated.
		_ = json.Unmarshal(body, &reply)
	}

	ctx := resp.Request.Context()
	if s.flow == flowLogin {
		p.afterLogin(ctx, resp, s, reply)
	} else {
		p.afterSettings(ctx, resp, s, reply)
	}
	return nil
}

// afterLogin audits a login, takes back its per-identifier attempt when it
// succeeded, and for a TOTP login makes sure the code was not used before.
func (p *Proxy) afterLogin(ctx context.Context, resp *http.Response, s *submission, reply kratosReply) {
	cookie := issuedSessionCookie(resp)
	succeeded := (resp.StatusCode == http.StatusOK && reply.Session != nil) || cookie != nil
	if !succeeded {
		actor := s.knownIdentity
		if reply.Error != nil {
			if named := uuidOrNil(reply.Error.Details.IdentityID); named != uuid.Nil {
				actor = named
			}
		}
		p.record(ctx, s, identity.Event{
			Action:         identity.ActionLoginFailed,
			ActorID:        actor,
			IdentifierHash: identifierHash(s.identifier),
			Detail:         methodDetail(s.method),
		})
		if s.passwordLogin() {
			p.waitFailedLoginFloor(ctx, s)
		}
		return
	}

	facts, err := p.sessionFacts(ctx, s, reply, cookie)
	if s.method == "totp" && !p.firstUseOfCode(ctx, resp, s, facts, err) {
		return
	}
	if err != nil {
		p.log.WarnContext(ctx, "identify session of a successful login", "method", s.method, "err", err)
		facts.identityID = s.knownIdentity
	}

	for _, row := range s.counted {
		if row.scope != scopeLoginIdentifier {
			continue
		}
		if err := p.limiter.refund(ctx, row); err != nil {
			p.log.ErrorContext(ctx, "refund sign-in attempt", "err", err)
		}
	}

	detail := methodDetail(s.method)
	if facts.aal != "" {
		detail["aal"] = facts.aal
	}
	p.record(ctx, s, identity.Event{
		Action:  identity.ActionLoginSucceeded,
		ActorID: facts.identityID,
		Detail:  detail,
	})
}

// firstUseOfCode records the TOTP code of a successful login and reports
// whether the login may stand. When the code was used before, or its use
// cannot be recorded, it revokes the session Kratos just issued or raised to
// AAL2 and replaces the response with a problem.
func (p *Proxy) firstUseOfCode(ctx context.Context, resp *http.Response, s *submission, facts sessionFacts, factsErr error) bool {
	if factsErr != nil || facts.identityID == uuid.Nil || facts.sessionID == "" {
		p.log.ErrorContext(ctx, "identify session of a TOTP login to check the code's reuse", "err", factsErr)
		p.revoke(ctx, facts.sessionID, facts.identityID)
		replaceWithProblem(resp, http.StatusServiceUnavailable, msgUnavailable)
		return false
	}

	first, err := p.codes.markUsed(ctx, facts.identityID, s.totpCode)
	if err != nil {
		p.log.ErrorContext(ctx, "record TOTP code use", "err", err)
		p.revoke(ctx, facts.sessionID, facts.identityID)
		replaceWithProblem(resp, http.StatusServiceUnavailable, msgUnavailable)
		return false
	}
	if first {
		return true
	}

	p.revoke(ctx, facts.sessionID, facts.identityID)
	p.record(ctx, s, identity.Event{
		Action:  identity.ActionSecondFactorReused,
		ActorID: facts.identityID,
		Detail:  map[string]string{"method": "totp"},
	})
	replaceWithProblem(resp, http.StatusBadRequest, msgCodeReused)
	return false
}

// revoke ends a session whose second factor did not hold. Kratos raises an
// existing session to AAL2 in place, so this also ends the AAL1 session the
// client started the step with.
func (p *Proxy) revoke(ctx context.Context, sessionID string, identityID uuid.UUID) {
	if sessionID == "" {
		return
	}
	defer p.invalidate(ctx, identityID)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.admin.RevokeSession(ctx, sessionID); err != nil {
		p.log.ErrorContext(ctx, "revoke session after a rejected TOTP code", "err", err)
	}
}

// sessionFacts finds the session a successful login produced: in the JSON
// response of an API flow or a JSON browser request, or else by checking the
// session cookie the response sets. A session still waiting for its second
// factor fails that check, so for a password login it is described from the
// identity the login named, at AAL1, without a session id.
func (p *Proxy) sessionFacts(ctx context.Context, s *submission, reply kratosReply, cookie *http.Cookie) (sessionFacts, error) {
	if reply.Session != nil {
		facts := sessionFacts{sessionID: reply.Session.ID, aal: reply.Session.AAL}
		if reply.Session.Identity != nil {
			facts.identityID = uuidOrNil(reply.Session.Identity.ID)
		}
		if facts.identityID == uuid.Nil && s.passwordLogin() {
			// Kratos leaves the identity out of a session that still needs
			// its second factor.
			facts.identityID = s.knownIdentity
		}
		return facts, nil
	}
	if cookie == nil {
		return sessionFacts{}, errors.New("no session in the response")
	}

	session, err := p.sessions.Verify(ctx, identity.Credentials{Cookie: (&http.Cookie{Name: cookie.Name, Value: cookie.Value}).String()})
	if errors.Is(err, identity.ErrSecondFactorPending) && s.passwordLogin() && s.knownIdentity != uuid.Nil {
		return sessionFacts{identityID: s.knownIdentity, aal: "aal1"}, nil
	}
	if err != nil {
		return sessionFacts{}, fmt.Errorf("verify the issued session cookie: %w", err)
	}
	return sessionFacts{sessionID: session.ID, identityID: session.IdentityID, aal: session.AAL}, nil
}

// afterSettings audits a successful password or factor change.
func (p *Proxy) afterSettings(ctx context.Context, resp *http.Response, s *submission, reply kratosReply) {
	action, detail := settingsEvent(s)
	if action == "" {
		return
	}
	cookie := issuedSessionCookie(resp)
	// Kratos returns the flow in state "success" for a successful API or
	// JSON settings update. For a browser form update it reissues the
	// session cookie along with its redirect.
	succeeded := (resp.StatusCode == http.StatusOK && reply.State == "success") || cookie != nil
	if !succeeded {
		return
	}

	actor := uuid.Nil
	if reply.Identity != nil {
		actor = uuidOrNil(reply.Identity.ID)
	}
	if actor == uuid.Nil {
		creds := s.credentials
		if cookie != nil {
			creds = identity.Credentials{Cookie: (&http.Cookie{Name: cookie.Name, Value: cookie.Value}).String()}
		}
		if session, err := p.sessions.Verify(ctx, creds); err != nil {
			p.log.WarnContext(ctx, "identify session of a settings change", "method", s.method, "err", err)
		} else {
			actor = session.IdentityID
		}
	}
	p.record(ctx, s, identity.Event{Action: action, ActorID: actor, TargetID: actor, Detail: detail})
	if action == identity.ActionPasswordChanged {
		// Kratos ended the identity's other sessions.
		p.invalidate(ctx, actor)
	}
}

// settingsEvent returns the audit action and detail of a settings
// submission, or "" for one that changes no credential.
func settingsEvent(s *submission) (identity.Action, map[string]string) {
	change := "added"
	switch s.method {
	case "password":
		return identity.ActionPasswordChanged, map[string]string{"method": "password"}
	case "totp":
		if s.fields["totp_unlink"] == "true" {
			change = "removed"
		}
	case "lookup_secret":
		if s.fields["lookup_secret_disable"] == "true" {
			change = "removed"
		}
	case "webauthn":
		if s.fields["webauthn_remove"] != "" {
			change = "removed"
		}
	default:
		return "", nil
	}
	return identity.ActionFactorChanged, map[string]string{"method": s.method, "change": change}
}

// issuedSessionCookie returns the session cookie the response sets, or nil
// when it sets none or deletes it.
func issuedSessionCookie(resp *http.Response) *http.Cookie {
	for _, cookie := range resp.Cookies() {
		if cookie.Name != identity.SessionCookie || cookie.Value == "" || cookie.MaxAge < 0 {
			continue
		}
		if !cookie.Expires.IsZero() && cookie.Expires.Before(time.Now()) {
			continue
		}
		return cookie
	}
	return nil
}

// replaceWithProblem turns Kratos's response into a problem. It drops every
// header Kratos set, the session cookie included.
func replaceWithProblem(resp *http.Response, status int, detail string) {
	body := problemBody(status, detail)
	resp.StatusCode = status
	resp.Status = fmt.Sprintf("%d %s", status, http.StatusText(status))
	resp.Header = http.Header{
		"Content-Type":   {"application/problem+json"},
		"Cache-Control":  {"no-store"},
		"Content-Length": {strconv.Itoa(len(body))},
	}
	resp.ContentLength = int64(len(body))
	resp.Body = io.NopCloser(bytes.NewReader(body))
}

// waitFailedLoginFloor delays a failed password login until failedLoginFloor
// has passed since the request arrived, or the client goes away.
func (p *Proxy) waitFailedLoginFloor(ctx context.Context, s *submission) {
	wait := p.failedLoginFloor - time.Since(s.started)
	if wait <= 0 {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

func methodDetail(method string) map[string]string {
	if method == "" {
		return map[string]string{}
	}
	return map[string]string{"method": method}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
