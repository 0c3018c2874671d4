package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"vetvault/identity"
)

// Audience is who an operation serves. Every operation needs a session that
// completed a second factor (AAL2); the audience then says whose.
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

// Access is what an operation declares next to its registration: its
// audience, for clinic operations the Keto permission on the clinic named by
// its {clinicID} path parameter, and whether it is a privileged change that
// needs a recent sign-in. The middleware refuses any operation that declares
// nothing.
type Access struct {
	Audience   Audience
	Permission string
	Recent     bool
}

const accessKey = "vetvault.access"

// enrolURL is where a session without a second factor is sent to add one;
// stepUpURL is where a session too old for a privileged change signs in again.
const (
	enrolURL  = "/.ory/self-service/settings/browser"
	stepUpURL = "/.ory/self-service/login/browser?refresh=true&aal=aal2"
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
			ctx.SetHeader("Link", "<"+enrolURL+">; rel=\"enrol-second-factor\"")
			h.writeProblem(api, ctx, http.StatusForbidden, fmt.Sprintf(msgSecondFactorNotEnrolled, enrolURL))
			return
		}
		switch {
		case access.Audience == AudienceStaff && session.Operator():
			h.writeProblem(api, ctx, http.StatusForbidden, msgOperatorsNoClinicData)
			return
		case access.Audience == AudienceOperator && !session.Operator():
			h.writeProblem(api, ctx, http.StatusForbidden, msgOperatorsOnly)
			return
		}
		if access.Recent && h.deps.Now().Sub(session.AuthenticatedAt) > h.deps.PrivilegedWindow {
			ctx.SetHeader("Link", "<"+stepUpURL+">; rel=\"step-up\"")
			h.writeProblem(api, ctx, http.StatusForbidden, fmt.Sprintf(msgStepUpRequired, h.deps.PrivilegedWindow, stepUpURL))
			return
		}

		if access.Permission != "" {
			status, message := h.checkClinicPermission(ctx, session, access.Permission)
			if status != 0 {
				h.writeProblem(api, ctx, status, message)
				return
			}
		}

		next(huma.WithValue(ctx, sessionKey{}, session))
	}
}

// checkClinicPermission returns 0 when the session may use permission on the
// clinic in the path. A caller with no role in the clinic gets 404, so a
// clinic's existence does not leak; a member whose role lacks the permission
// gets 403; an unreachable Keto gets 503.
func (h *handlers) checkClinicPermission(ctx huma.Context, session identity.Session, permission string) (int, string) {
	clinicID, err := uuid.Parse(ctx.Param("clinicID"))
	if err != nil {
		return http.StatusNotFound, msgClinicNotFound
	}

	allowed, err := h.deps.Permissions.Check(ctx.Context(), identity.ClinicNamespace, clinicID.String(), permission, session.IdentityID)
	if err != nil {
		h.log.ErrorContext(ctx.Context(), "permission check failed", "err", err, "clinic_id", clinicID, "request_id", RequestIDFrom(ctx.Context()))
		return http.StatusServiceUnavailable, msgPermissionsUnavailable
	}
	if allowed {
		return 0, ""
	}

	member := false
	if permission != permissionViewClinic {
		member, err = h.deps.Permissions.Check(ctx.Context(), identity.ClinicNamespace, clinicID.String(), permissionViewClinic, session.IdentityID)
		if err != nil {
			h.log.ErrorContext(ctx.Context(), "membership check failed", "err", err, "clinic_id", clinicID, "request_id", RequestIDFrom(ctx.Context()))
			return http.StatusServiceUnavailable, msgPermissionsUnavailable
		}
	}
	if !member {
		return http.StatusNotFound, msgClinicNotFound
	}
	return http.StatusForbidden, fmt.Sprintf(msgPermissionDenied, permission)
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
