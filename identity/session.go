package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	kratos "github.com/ory/kratos-client-go"
)

// Session errors. The API layer turns ErrNoSession and ErrSessionInvalid into
// 401, ErrSecondFactorPending into 403, and ErrSessionsUnavailable into 503.
var (
	ErrNoSession           = errors.New("no session credentials")
	ErrSessionInvalid      = errors.New("session invalid or expired")
	ErrSecondFactorPending = errors.New("second factor pending for this session")
	ErrSessionsUnavailable = errors.New("session service unavailable")
)

// AAL2 is the authenticator assurance level of a session that completed a
// second factor (TOTP or a recovery code).
const AAL2 = "aal2"

// SessionCookie is the name of the Kratos session cookie.
const SessionCookie = "ory_kratos_session"

// whoamiTimeout bounds one session check against Kratos.
const whoamiTimeout = 3 * time.Second

// Identity schema ids, which tell staff from platform operators. Kratos
// self-service registration only ever creates SchemaStaff identities.
const (
	SchemaStaff    = "staff"
	SchemaOperator = "operator"
)

// Session is a verified Kratos session of a staff member or an operator.
type Session struct {
	ID         string
	IdentityID uuid.UUID
	SchemaID   string
	Email      string
	// AAL is "aal1" after a password alone and "aal2" after a second factor.
	AAL string
	// AuthenticatedAt is when the last factor was completed; privileged
	// changes need it to be recent.
	AuthenticatedAt time.Time
	ExpiresAt       time.Time
}

// Operator reports whether the session belongs to a platform operator.
func (s Session) Operator() bool {
	return s.SchemaID == SchemaOperator
}

// Credentials carries what a request presented as its session: the session
// cookie of a browser, or a session token of an API client.
type Credentials struct {
	Cookie string
	Token  string
}

// CredentialsFromHeaders extracts session credentials from request headers:
// "Authorization: Bearer …", then "X-Session-Token", then the session cookie.
func CredentialsFromHeaders(header http.Header) Credentials {
	if auth := header.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(auth, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
			return Credentials{Token: strings.TrimSpace(token)}
		}
	}
	if token := strings.TrimSpace(header.Get("X-Session-Token")); token != "" {
		return Credentials{Token: token}
	}
	request := http.Request{Header: header}
	if cookie, err := request.Cookie(SessionCookie); err == nil && cookie.Value != "" {
		return Credentials{Cookie: cookie.String()}
	}
	return Credentials{}
}

// Sessions verifies Kratos sessions through the public whoami endpoint.
type Sessions struct {
	kratos *kratos.APIClient
}

// NewSessions returns a verifier for the Kratos public API at publicURL
// (for example http://127.0.0.1:4433).
func NewSessions(publicURL string, httpClient *http.Client) *Sessions {
	cfg := kratos.NewConfiguration()
	cfg.Servers = kratos.ServerConfigurations{{URL: publicURL}}
	cfg.HTTPClient = httpClient
	return &Sessions{kratos: kratos.NewAPIClient(cfg)}
}

// Verify checks with Kratos whether the credentials belong to an active session.
// Kratos is configured with whoami.required_aal set to highest_available, so
// a password-only session of an identity that has a second factor is
// rejected there; Verify reports it as ErrSecondFactorPending.
func (s *Sessions) Verify(ctx context.Context, creds Credentials) (Session, error) {
	if creds.Cookie == "" && creds.Token == "" {
		return Session{}, ErrNoSession
	}
	ctx, cancel := context.WithTimeout(ctx, whoamiTimeout)
	defer cancel()

	request := s.kratos.FrontendAPI.ToSession(ctx)
	if creds.Token != "" {
		request = request.XSessionToken(creds.Token)
	} else {
		request = request.Cookie(creds.Cookie)
	}
	session, response, err := request.Execute()
	if response != nil && response.Body != nil {
		defer response.Body.Close()
	}
	if err != nil {
		switch {
		case response != nil && response.StatusCode == http.StatusUnauthorized:
			return Session{}, ErrSessionInvalid
		case response != nil && response.StatusCode == http.StatusForbidden:
			return Session{}, ErrSecondFactorPending
		default:
			return Session{}, fmt.Errorf("%w: whoami: %w", ErrSessionsUnavailable, err)
		}
	}
	return sessionFromKratos(session)
}

func sessionFromKratos(session *kratos.Session) (Session, error) {
	if !session.GetActive() || session.Identity == nil {
		return Session{}, ErrSessionInvalid
	}
	identityID, err := uuid.Parse(session.Identity.Id)
	if err != nil {
		return Session{}, fmt.Errorf("parse identity id of session: %w", err)
	}
	result := Session{
		ID:              session.Id,
		IdentityID:      identityID,
		SchemaID:        session.Identity.SchemaId,
		AAL:             string(session.GetAuthenticatorAssuranceLevel()),
		AuthenticatedAt: session.GetAuthenticatedAt(),
		ExpiresAt:       session.GetExpiresAt(),
	}
	if traits, ok := session.Identity.Traits.(map[string]any); ok {
		result.Email, _ = traits["email"].(string)
	}
	return result, nil
}
