package identity

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Action names a security-relevant event in the audit trail.
type Action string

// The actions identity code records.
const (
	ActionLoginSucceeded      Action = "login.succeeded"
	ActionLoginFailed         Action = "login.failed"
	ActionLoginRateLimited    Action = "login.rate_limited"
	ActionSecondFactorReused  Action = "second_factor.reused"
	ActionFactorChanged       Action = "factor.changed"
	ActionPasswordChanged     Action = "password.changed"
	ActionSessionRevoked      Action = "session.revoked"
	ActionIdentityDeactivated Action = "identity.deactivated"
	ActionOperatorCreated     Action = "operator.created"
	ActionInvitationSent      Action = "invitation.sent"
	ActionRoleGranted         Action = "role.granted"
	ActionRoleRevoked         Action = "role.revoked"
	ActionMemberRemoved       Action = "member.removed"
	ActionAccessDenied        Action = "access.denied"
	// Custom roles a clinic defines, and the reconciler's repairs of Keto
	// relationships that had drifted from the database.
	ActionCustomRoleCreated    Action = "custom_role.created"
	ActionCustomRoleUpdated    Action = "custom_role.updated"
	ActionCustomRoleDeleted    Action = "custom_role.deleted"
	ActionRelationshipRepaired Action = "relationship.repaired"
)

// Event is one entry of the audit trail. It never carries a secret: no
// password, code, token or session id, and no request body.
type Event struct {
	Action Action
	// ActorID is who acted, uuid.Nil when unknown (a failed login with an
	// unknown identifier).
	ActorID uuid.UUID
	// TargetID is the identity acted upon, uuid.Nil when there is none.
	TargetID uuid.UUID
	// ClinicID scopes the event to a clinic; uuid.Nil for platform events
	// such as logins.
	ClinicID uuid.UUID
	// IdentifierHash is the SHA-256 of a normalised login identifier, set
	// for failed logins so repeated attempts on one account can be counted
	// without storing the email address.
	IdentifierHash string
	IP             string
	UserAgent      string
	// Detail holds small non-secret facts: a method, role or branch.
	Detail map[string]string
	At     time.Time
}

// EventRecorder writes events to the audit trail.
type EventRecorder interface {
	Record(ctx context.Context, event Event) error
}
