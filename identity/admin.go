package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	kratos "github.com/ory/kratos-client-go"
)

// Errors from the admin API calls.
var (
	ErrIdentityNotFound = errors.New("identity not found")
	ErrIdentityExists   = errors.New("an identity with this email already exists")
)

// adminTimeout bounds one call to the Kratos admin API.
const adminTimeout = 5 * time.Second

// Admin manages identities through the Kratos admin API, which listens on
// loopback only and is never exposed.
type Admin struct {
	kratos *kratos.APIClient
}

// NewAdmin returns a client for the Kratos admin API at adminURL (for
// example http://127.0.0.1:4434).
func NewAdmin(adminURL string, httpClient *http.Client) *Admin {
	cfg := kratos.NewConfiguration()
	cfg.Servers = kratos.ServerConfigurations{{URL: adminURL}}
	cfg.HTTPClient = httpClient
	return &Admin{kratos: kratos.NewAPIClient(cfg)}
}

// Identity is the part of a Kratos identity VetVault reads.
type Identity struct {
	ID       uuid.UUID
	SchemaID string
	Email    string
	Active   bool
	// HasPassword is false for an identity created by invitation whose
	// owner has not yet set a password.
	HasPassword bool
}

// NormaliseEmail returns the form in which emails are stored and compared:
// trimmed and lower-cased, so case variants map to one identity.
func NormaliseEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// FindByEmail returns the identity whose login identifier is email.
func (a *Admin) FindByEmail(ctx context.Context, email string) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	found, _, err := a.kratos.IdentityAPI.ListIdentities(ctx).CredentialsIdentifier(NormaliseEmail(email)).Execute()
	if err != nil {
		// A transport error quotes the request URL, whose query holds the
		// email; keep only the cause so the email never reaches a log.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return Identity{}, fmt.Errorf("%w: find identity by email: %w", ErrSessionsUnavailable, err)
	}
	if len(found) == 0 {
		return Identity{}, ErrIdentityNotFound
	}
	// The list omits credentials, which tell whether a password was set.
	id, err := uuid.Parse(found[0].Id)
	if err != nil {
		return Identity{}, fmt.Errorf("parse identity id: %w", err)
	}
	return a.Get(ctx, id)
}

// Get returns the identity with id.
func (a *Admin) Get(ctx context.Context, id uuid.UUID) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	// Kratos keeps a password credential, with the email as identifier and
	// an empty config, for an identity whose owner never set a password, so
	// only the config shows whether one was set. The config contains the
	// bcrypt hash, which identityFromKratos checks for presence and drops.
	found, response, err := a.kratos.IdentityAPI.GetIdentity(ctx, id.String()).IncludeCredential([]string{"password"}).Execute()
	if response != nil && response.StatusCode == http.StatusNotFound {
		return Identity{}, ErrIdentityNotFound
	}
	if err != nil {
		return Identity{}, fmt.Errorf("%w: get identity %s: %w", ErrSessionsUnavailable, id, err)
	}
	return identityFromKratos(found)
}

// Create creates an identity of schemaID with email and no credentials; its
// owner sets a password through a recovery code.
func (a *Admin) Create(ctx context.Context, schemaID, email string) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	body := kratos.NewCreateIdentityBody(schemaID, map[string]any{"email": NormaliseEmail(email)})
	created, response, err := a.kratos.IdentityAPI.CreateIdentity(ctx).CreateIdentityBody(*body).Execute()
	if response != nil && response.StatusCode == http.StatusConflict {
		return Identity{}, ErrIdentityExists
	}
	if err != nil {
		return Identity{}, fmt.Errorf("%w: create %s identity: %w", ErrSessionsUnavailable, schemaID, err)
	}
	return identityFromKratos(created)
}

// RecoveryCode is a one-time code, with a link that opens the recovery flow,
// that lets an identity's owner sign in once and set a password.
type RecoveryCode struct {
	Code      string
	Link      string
	ExpiresAt time.Time
}

// CreateRecoveryCode issues a recovery code for id that expires after
// lifetime. Kratos does not send it: the caller delivers it.
func (a *Admin) CreateRecoveryCode(ctx context.Context, id uuid.UUID, lifetime time.Duration) (RecoveryCode, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	body := kratos.NewCreateRecoveryCodeForIdentityBody(id.String())
	body.SetExpiresIn(lifetime.String())
	body.SetFlowType("browser")
	code, _, err := a.kratos.IdentityAPI.CreateRecoveryCodeForIdentity(ctx).CreateRecoveryCodeForIdentityBody(*body).Execute()
	if err != nil {
		return RecoveryCode{}, fmt.Errorf("%w: create recovery code for %s: %w", ErrSessionsUnavailable, id, err)
	}
	return RecoveryCode{Code: code.RecoveryCode, Link: code.RecoveryLink, ExpiresAt: code.GetExpiresAt()}, nil
}

// RevokeSessions ends every session of id.
func (a *Admin) RevokeSessions(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	response, err := a.kratos.IdentityAPI.DeleteIdentitySessions(ctx, id.String()).Execute()
	if response != nil && response.StatusCode == http.StatusNotFound {
		return nil // no sessions to revoke
	}
	if err != nil {
		return fmt.Errorf("%w: revoke sessions of %s: %w", ErrSessionsUnavailable, id, err)
	}
	return nil
}

// RevokeSession ends one session by its id.
func (a *Admin) RevokeSession(ctx context.Context, sessionID string) error {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	if _, err := a.kratos.IdentityAPI.DisableSession(ctx, sessionID).Execute(); err != nil {
		return fmt.Errorf("%w: revoke session: %w", ErrSessionsUnavailable, err)
	}
	return nil
}

// SetActive activates or deactivates id. Kratos refuses sign-ins and
// session checks of an inactive identity.
func (a *Admin) SetActive(ctx context.Context, id uuid.UUID, active bool) error {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	state := "inactive"
	if active {
		state = "active"
	}
	patch := kratos.NewJsonPatch("replace", "/state")
	patch.SetValue(state)
	if _, _, err := a.kratos.IdentityAPI.PatchIdentity(ctx, id.String()).JsonPatch([]kratos.JsonPatch{*patch}).Execute(); err != nil {
		return fmt.Errorf("%w: set state of %s to %s: %w", ErrSessionsUnavailable, id, state, err)
	}
	return nil
}

// Delete deletes id and with it every credential and session.
func (a *Admin) Delete(ctx context.Context, id uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	response, err := a.kratos.IdentityAPI.DeleteIdentity(ctx, id.String()).Execute()
	if response != nil && response.StatusCode == http.StatusNotFound {
		return ErrIdentityNotFound
	}
	if err != nil {
		return fmt.Errorf("%w: delete identity %s: %w", ErrSessionsUnavailable, id, err)
	}
	return nil
}

func identityFromKratos(found *kratos.Identity) (Identity, error) {
	id, err := uuid.Parse(found.Id)
	if err != nil {
		return Identity{}, fmt.Errorf("parse identity id: %w", err)
	}
	result := Identity{ID: id, SchemaID: found.SchemaId, Active: found.GetState() != "inactive"}
	if credential, ok := found.GetCredentials()["password"]; ok {
		hash, _ := credential.Config["hashed_password"].(string)
		result.HasPassword = hash != ""
	}
	if traits, ok := found.Traits.(map[string]any); ok {
		result.Email, _ = traits["email"].(string)
	}
	return result, nil
}

// SessionInfo describes one active session for its owner's session list.
type SessionInfo struct {
	ID              string
	AAL             string
	AuthenticatedAt time.Time
	ExpiresAt       time.Time
	Devices         []Device
}

// Device is the client address and user agent a session was used from.
type Device struct {
	IP        string
	UserAgent string
}

// ListSessions returns the active sessions of id, newest first as Kratos
// orders them.
func (a *Admin) ListSessions(ctx context.Context, id uuid.UUID) ([]SessionInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()

	sessions, _, err := a.kratos.IdentityAPI.ListIdentitySessions(ctx, id.String()).Active(true).PageSize(250).Execute()
	if err != nil {
		return nil, fmt.Errorf("%w: list sessions of %s: %w", ErrSessionsUnavailable, id, err)
	}
	infos := make([]SessionInfo, 0, len(sessions))
	for _, session := range sessions {
		info := SessionInfo{
			ID:              session.Id,
			AAL:             string(session.GetAuthenticatorAssuranceLevel()),
			AuthenticatedAt: session.GetAuthenticatedAt(),
			ExpiresAt:       session.GetExpiresAt(),
		}
		for _, device := range session.Devices {
			info.Devices = append(info.Devices, Device{IP: device.GetIpAddress(), UserAgent: device.GetUserAgent()})
		}
		infos = append(infos, info)
	}
	return infos, nil
}
