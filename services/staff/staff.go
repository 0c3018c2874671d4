// Package staff manages the people who work in a clinic: invitations,
// listing members, deactivating and removing them, and each person's own
// sessions.
package staff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/mail"
	"vetvault/tenants"
)

// Errors the API layer maps to status codes.
var (
	ErrMemberNotFound   = errors.New("staff member not found in this clinic")
	ErrAlreadyMember    = errors.New("already a member with this role")
	ErrOperatorEmail    = errors.New("this email belongs to a platform operator, who cannot join a clinic")
	ErrOwnersOnly       = errors.New("only an owner may grant, change or remove the owner role")
	ErrLastOwner        = errors.New("the last owner of a clinic cannot be deactivated or removed")
	ErrSessionNotFound  = errors.New("session not found")
	ErrBranchNotFound   = errors.New("branch not found in this clinic")
	ErrCannotTargetSelf = errors.New("you cannot deactivate or remove yourself")
)

// InvalidInviteError names the field of an invitation that fails validation.
type InvalidInviteError struct {
	Field   string
	Message string
}

func (e *InvalidInviteError) Error() string {
	return fmt.Sprintf("invalid invitation: %s: %s", e.Field, e.Message)
}

// Directory is the part of the Kratos admin API the service needs.
type Directory interface {
	FindByEmail(ctx context.Context, email string) (identity.Identity, error)
	Create(ctx context.Context, schemaID, email string) (identity.Identity, error)
	CreateRecoveryCode(ctx context.Context, id uuid.UUID, lifetime time.Duration) (identity.RecoveryCode, error)
	SetActive(ctx context.Context, id uuid.UUID, active bool) error
	RevokeSessions(ctx context.Context, id uuid.UUID) error
	RevokeSession(ctx context.Context, sessionID string) error
	ListSessions(ctx context.Context, id uuid.UUID) ([]identity.SessionInfo, error)
}

// Relationships reads clinic roles in Keto. Changes to them go through the
// outbox instead.
type Relationships interface {
	Check(ctx context.Context, namespace, object, permission string, subject uuid.UUID) (bool, error)
	ClinicRoles(ctx context.Context, identityID uuid.UUID) ([]identity.ClinicRole, error)
}

// Mailer sends one email.
type Mailer interface {
	Send(ctx context.Context, message mail.Message) error
}

// SessionInvalidator drops cached sessions of an identity on every server
// instance, so a revocation takes effect on the next request.
type SessionInvalidator interface {
	Invalidate(ctx context.Context, identityID uuid.UUID) error
}

// Actor is the signed-in person making a change, with where they made it
// from, for the audit trail.
type Actor struct {
	IdentityID uuid.UUID
	SessionID  string
	IP         string
	UserAgent  string
}

// Config holds the service's settings.
type Config struct {
	// AppURL is the browser address of VetVault, used in emails.
	AppURL string
	// InvitationLifetime is how long an invitation's one-time code works.
	InvitationLifetime time.Duration
}

// Service manages clinic staff.
type Service struct {
	db            *tenants.DB
	outbox        *tenants.Outbox
	directory     Directory
	relationships Relationships
	mailer        Mailer
	sessions      SessionInvalidator
	cfg           Config
	now           func() time.Time
	log           *slog.Logger
}

// NewService returns the staff service. Membership changes reach Keto
// through outbox.
func NewService(db *tenants.DB, outbox *tenants.Outbox, directory Directory, relationships Relationships, mailer Mailer,
	sessions SessionInvalidator, cfg Config, now func() time.Time, log *slog.Logger) *Service {
	return &Service{db: db, outbox: outbox, directory: directory, relationships: relationships, mailer: mailer,
		sessions: sessions, cfg: cfg, now: now, log: log}
}

// event returns an audit event by actor at the current time.
func (s *Service) event(action identity.Action, actor Actor, clinicID, target uuid.UUID, detail map[string]string) identity.Event {
	return identity.Event{
		Action:    action,
		ActorID:   actor.IdentityID,
		TargetID:  target,
		ClinicID:  clinicID,
		IP:        actor.IP,
		UserAgent: actor.UserAgent,
		Detail:    detail,
		At:        s.now(),
	}
}

// isOwner reports whether identityID holds the owner relation in clinicID.
func (s *Service) isOwner(ctx context.Context, clinicID, identityID uuid.UUID) (bool, error) {
	return s.relationships.Check(ctx, identity.ClinicNamespace, clinicID.String(), "owners", identityID)
}
