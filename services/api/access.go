package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/identity"
)

// Audience is the group of people an operation serves. Every operation needs
// a session that completed a second factor (AAL2), and the audience names
// whose session it must be.
type Audience int

// The audiences.
const (
	// AudienceStaff is clinic staff. Operators are refused, because they
	// never reach clinic data.
	AudienceStaff Audience = iota + 1
	// AudienceOperator is platform operators only.
	AudienceOperator
	// AudienceAnyone is staff and operators alike.
	AudienceAnyone
)

// Access is the rule an operation declares next to its registration: its
// audience, for clinic operations the Keto permission it needs and on which
// object, and whether it is a privileged change that needs a recent sign-in.
// The middleware refuses any operation that declares nothing.
type Access struct {
	Audience Audience
	// Permission is checked on Object, or on the clinic named by the
	// {clinicID} path parameter when Object is zero.
	Permission string
	Object     Object
	Recent     bool
}

// Object names the Keto object a permission is checked on: a namespace and
// the path parameter that holds the object's id.
type Object struct {
	Namespace string
	Param     string
}

// The objects operations check permissions on.
var (
	ObjectClinic = Object{Namespace: identity.ClinicNamespace, Param: "clinicID"}
	ObjectBranch = Object{Namespace: identity.BranchNamespace, Param: "branchID"}
	ObjectPet    = Object{Namespace: identity.PetNamespace, Param: "petID"}
)

// object returns the object the permission is checked on.
func (a Access) object() Object {
	if a.Object == (Object{}) {
		return ObjectClinic
	}
	return a.Object
}

const accessKey = "vetvault.access"

// enrolURL is where a browser session without a second factor is sent to add
// one, and enrolAPIURL where a client with a session token starts the same
// settings flow. stepUpURL is where a session too old for a privileged change
// signs in again.
const (
	enrolURL    = "/.ory/self-service/settings/browser"
	enrolAPIURL = "/.ory/self-service/settings/api"
	stepUpURL   = "/.ory/self-service/login/browser?refresh=true&aal=aal2"
)

// declare attaches the access rule to op.
func declare(op huma.Operation, access Access) huma.Operation {
	if op.Metadata == nil {
		op.Metadata = map[string]any{}
	}
	op.Metadata[accessKey] = access
	return op
}

// AccessOf returns the access an operation declared, if any.
func AccessOf(op *huma.Operation) (Access, bool) {
	access, ok := op.Metadata[accessKey].(Access)
	return access, ok
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) identity.Session {
	session, _ := ctx.Value(sessionKey{}).(identity.Session)
	return session
}

// authorize returns the middleware that runs before every operation: it
// verifies the session, enforces the declared level, and checks the declared
// permission in Keto. Every failure denies; none falls through to the handler.
func (h *handlers) authorize(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		access, ok := AccessOf(ctx.Operation())
		if !ok || access.Audience == 0 {
			h.log.ErrorContext(ctx.Context(), "operation declares no access rule", "operation", ctx.Operation().OperationID)
			h.writeProblem(api, ctx, http.StatusInternalServerError, msgInternal)
			return
		}

		creds := identity.CredentialsFromHeaders(headersOf(ctx))
		session, err := h.deps.Sessions.Verify(ctx.Context(), creds)
		switch {
		case errors.Is(err, identity.ErrNoSession):
			h.writeProblem(api, ctx, http.StatusUnauthorized, msgSignInRequired)
			return
		case errors.Is(err, identity.ErrSessionInvalid):
			h.writeProblem(api, ctx, http.StatusUnauthorized, msgSessionInvalid)
			return
		case errors.Is(err, identity.ErrSecondFactorPending):
			h.writeProblem(api, ctx, http.StatusForbidden, msgSecondFactorPending)
			return
		case err != nil:
			h.log.ErrorContext(ctx.Context(), "session verification failed", "err", err, "request_id", RequestIDFrom(ctx.Context()))
			h.writeProblem(api, ctx, http.StatusServiceUnavailable, msgSessionsUnavailable)
			return
		}

		if session.AAL != identity.AAL2 {
			enrol := enrolURL
			if creds.Token != "" {
				enrol = enrolAPIURL
			}
			ctx.SetHeader("Link", "<"+enrol+">; rel=\"enrol-second-factor\"")
			h.writeProblem(api, ctx, http.StatusForbidden, fmt.Sprintf(msgSecondFactorNotEnrolled, enrol))
			return
		}
		switch {
		case access.Audience == AudienceStaff && session.Operator():
			h.recordAudienceDenial(ctx, session)
			h.writeProblem(api, ctx, http.StatusForbidden, msgOperatorsNoClinicData)
			return
		case access.Audience == AudienceOperator && !session.Operator():
			h.recordAudienceDenial(ctx, session)
			h.writeProblem(api, ctx, http.StatusForbidden, msgOperatorsOnly)
			return
		}
		if access.Recent && h.deps.Now().Sub(session.AuthenticatedAt) > h.deps.PrivilegedWindow {
			ctx.SetHeader("Link", "<"+stepUpURL+">; rel=\"step-up\"")
			h.writeProblem(api, ctx, http.StatusForbidden, fmt.Sprintf(msgStepUpRequired, h.deps.PrivilegedWindow, stepUpURL))
			return
		}

		if access.Permission != "" {
			status, message := h.checkPermission(ctx, session, access)
			if status != 0 {
				h.writeProblem(api, ctx, status, message)
				return
			}
		}

		next(huma.WithValue(ctx, sessionKey{}, session))
	}
}

// checkPermission returns 0 when the session holds the operation's
// permission on its object. A caller with no role in the clinic of the path
// gets 404, so a clinic's existence does not leak. A member whose roles lack
// the permission gets 403, and an unreachable or slow Keto gets 503. Every
// denial is written to the audit trail.
func (h *handlers) checkPermission(ctx huma.Context, session identity.Session, access Access) (int, string) {
	object := access.object()
	clinicID, clinicErr := uuid.Parse(ctx.Param("clinicID"))
	objectID, objectErr := uuid.Parse(ctx.Param(object.Param))
	if clinicErr != nil || objectErr != nil {
		return http.StatusNotFound, msgClinicNotFound
	}

	allowed, err := h.deps.Permissions.Check(ctx.Context(), object.Namespace, objectID.String(), access.Permission, session.IdentityID)
	if err != nil {
		h.log.ErrorContext(ctx.Context(), "permission check failed", "err", err, "clinic_id", clinicID, "request_id", RequestIDFrom(ctx.Context()))
		return http.StatusServiceUnavailable, msgPermissionsUnavailable
	}
	if allowed {
		return 0, ""
	}

	member := false
	if object != ObjectClinic || access.Permission != permissionViewClinic {
		member, err = h.deps.Permissions.Check(ctx.Context(), identity.ClinicNamespace, clinicID.String(), permissionViewClinic, session.IdentityID)
		if err != nil {
			h.log.ErrorContext(ctx.Context(), "membership check failed", "err", err, "clinic_id", clinicID, "request_id", RequestIDFrom(ctx.Context()))
			return http.StatusServiceUnavailable, msgPermissionsUnavailable
		}
	}
	h.recordDenial(ctx, session, access, object, objectID, clinicID, member)
	if !member {
		return http.StatusNotFound, msgClinicNotFound
	}
	if object != ObjectClinic {
		// A branch or pet that is not this clinic's (or does not exist) is
		// not found, rather than forbidden, even to a member.
		parent, err := h.deps.Permissions.ParentClinic(ctx.Context(), object.Namespace, objectID)
		if err != nil {
			h.log.ErrorContext(ctx.Context(), "parent clinic lookup failed", "err", err, "clinic_id", clinicID, "request_id", RequestIDFrom(ctx.Context()))
			return http.StatusServiceUnavailable, msgPermissionsUnavailable
		}
		if parent != clinicID {
			return http.StatusNotFound, fmt.Sprintf(msgObjectNotFound, strings.ToLower(object.Namespace))
		}
	}
	return http.StatusForbidden, fmt.Sprintf(msgPermissionDenied, access.Permission)
}

// recordDenial writes a denied attempt to the audit trail. A member's denial
// goes to the clinic's own trail, so its privacy review includes it. An
// outsider's probe goes to the platform's security events, because it must
// not write into a clinic it cannot see. A failed write is logged and does
// not change the response.
func (h *handlers) recordDenial(ctx huma.Context, session identity.Session, access Access, object Object, objectID, clinicID uuid.UUID, member bool) {
	if h.deps.Audit == nil {
		return
	}
	event := identity.Event{
		Action:    identity.ActionAccessDenied,
		ActorID:   session.IdentityID,
		IP:        ClientIPFrom(ctx.Context()),
		UserAgent: ctx.Header("User-Agent"),
		Detail: map[string]string{
			"operation":  ctx.Operation().OperationID,
			"permission": access.Permission,
			"object":     object.Namespace + ":" + objectID.String(),
			"clinic_id":  clinicID.String(),
		},
		At: h.deps.Now(),
	}
	if member {
		event.ClinicID = clinicID
	}
	if err := h.deps.Audit.Record(ctx.Context(), event); err != nil {
		h.log.ErrorContext(ctx.Context(), "record denied attempt failed", "err", err, "clinic_id", clinicID, "request_id", RequestIDFrom(ctx.Context()))
	}
}

func (h *handlers) writeProblem(api huma.API, ctx huma.Context, status int, message string) {
	if err := huma.WriteErr(api, ctx, status, message); err != nil {
		h.log.ErrorContext(ctx.Context(), "write problem response failed", "err", err)
	}
}

func headersOf(ctx huma.Context) http.Header {
	header := http.Header{}
	for _, name := range []string{"Authorization", "X-Session-Token", "Cookie"} {
		if value := ctx.Header(name); value != "" {
			header.Set(name, value)
		}
	}
	return header
}

// recordAudienceDenial writes to the platform's security events that a
// session called an operation meant for the other audience (an operator
// calling a clinic operation, or staff an operator one). It never writes
// into a clinic's trail, because the caller is no member of it.
func (h *handlers) recordAudienceDenial(ctx huma.Context, session identity.Session) {
	if h.deps.Audit == nil {
		return
	}
	event := identity.Event{
		Action:    identity.ActionAccessDenied,
		ActorID:   session.IdentityID,
		IP:        ClientIPFrom(ctx.Context()),
		UserAgent: ctx.Header("User-Agent"),
		Detail: map[string]string{
			"operation": ctx.Operation().OperationID,
			"reason":    "audience",
		},
		At: h.deps.Now(),
	}
	if err := h.deps.Audit.Record(ctx.Context(), event); err != nil {
		h.log.ErrorContext(ctx.Context(), "record denied attempt failed", "err", err, "request_id", RequestIDFrom(ctx.Context()))
	}
}
