// Package api is the HTTP edge of VetVault: it declares the Huma operations,
// checks every request's session and permission, and maps domain results and
// errors to responses. It holds no business rules and no SQL.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"

	"vetvault/identity"
	"vetvault/services/appointment"
	"vetvault/tenants"
)

// SessionVerifier verifies the session a request presents.
type SessionVerifier interface {
	Verify(ctx context.Context, creds identity.Credentials) (identity.Session, error)
}

// PermissionChecker answers permission questions from Keto.
type PermissionChecker interface {
	Check(ctx context.Context, namespace, object, permission string, subject uuid.UUID) (bool, error)
	ClinicRoles(ctx context.Context, identityID uuid.UUID) ([]identity.ClinicRole, error)
	ParentClinic(ctx context.Context, namespace string, object uuid.UUID) (uuid.UUID, error)
}

// ClinicService creates and reads clinics.
type ClinicService interface {
	Create(ctx context.Context, owner uuid.UUID, input tenants.NewClinic) (tenants.Clinic, error)
	Get(ctx context.Context, clinicID uuid.UUID) (tenants.Clinic, error)
}

// AppointmentStore books and reads appointments.
type AppointmentStore interface {
	Book(ctx context.Context, clinicID, createdBy uuid.UUID, booking appointment.Booking) (appointment.Appointment, error)
	Get(ctx context.Context, clinicID, id uuid.UUID) (appointment.Appointment, error)
	List(ctx context.Context, clinicID uuid.UUID, q appointment.Query) ([]appointment.Appointment, error)
}

// Deps are the services the operations call.
type Deps struct {
	Sessions     SessionVerifier
	Permissions  PermissionChecker
	Clinics      ClinicService
	Appointments AppointmentStore
	Staff        StaffService
	Roles        RoleService
	// Audit records denied attempts; nil records nothing.
	Audit     identity.EventRecorder
	Operators OperatorService
	// Pets, Records and Referrals serve pets, their clinical records and
	// the referrals that share those records.
	Pets      PetRegistry
	Records   RecordService
	Referrals ReferralService
	Log       *slog.Logger
	// PrivilegedWindow is the maximum age of a sign-in for an operation
	// that declares Recent, such as granting a role.
	PrivilegedWindow time.Duration
	Now              func() time.Time
}

// Version is the API version shown in the OpenAPI document.
const Version = "0.1.0"

// New registers the VetVault API on mux: the operations under /v1 and the
// OpenAPI document at /openapi.json, which the web UI renders at /docs.
func New(mux *http.ServeMux, deps Deps) huma.API {
	hideInternalErrors()

	config := huma.DefaultConfig("VetVault API", Version)
	config.DocsPath = "" // Huma's page loads its renderer from a CDN, so web.Handler serves /docs instead.
	config.Info.Description = "Practice management for veterinary clinics. Every /v1 operation needs a Kratos session " +
		"(the ory_kratos_session cookie, or a session token as Authorization: Bearer or X-Session-Token) " +
		"that completed a second factor (AAL2)."
	config.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"sessionToken":  {Type: "http", Scheme: "bearer", Description: "Kratos session token"},
		"sessionCookie": {Type: "apiKey", In: "cookie", Name: identity.SessionCookie, Description: "Kratos session cookie"},
	}
	config.Security = []map[string][]string{{"sessionToken": {}}, {"sessionCookie": {}}}

	api := humago.New(mux, config)
	h := &handlers{deps: deps, log: deps.Log}
	api.UseMiddleware(h.authorize(api))

	registerMe(api, h)
	registerClinics(api, h)
	registerAppointments(api, h)
	registerStaff(api, h)
	registerRoles(api, h)
	registerOperators(api, h)
	registerPets(api, h)
	return api
}

type handlers struct {
	deps Deps
	log  *slog.Logger
}

var hideOnce sync.Once

// hideInternalErrors makes every 5xx problem that Huma builds itself (a
// panic, a response that fails to marshal) carry only Huma's fixed message
// and the request id, never the text of the underlying error. It also passes
// 4xx details through clientDetails. Huma offers this hook only as a package
// variable, so it is set once per process.
func hideInternalErrors() {
	hideOnce.Do(func() {
		build := huma.NewErrorWithContext
		huma.NewErrorWithContext = func(ctx huma.Context, status int, msg string, errs ...error) huma.StatusError {
			if status < http.StatusInternalServerError {
				return build(ctx, status, msg, clientDetails(errs)...)
			}
			requestID := ""
			if ctx != nil {
				requestID = RequestIDFrom(ctx.Context())
			}
			if len(errs) > 0 {
				// No logger reaches this hook, so it uses the process default,
				// which main sets to the server's logger.
				slog.Default().Error("request failed inside huma", "status", status, "request_id", requestID, "err", errs[0])
			}
			return build(ctx, status, withRequestID(msg, requestID))
		}
	})
}

// missingProperty matches Huma's validation message for a missing required
// field.
var missingProperty = regexp.MustCompile(`^expected required property (\S+) to be present$`)

// clientDetails rewrites Huma's validation details for clients: a missing
// field is located at body.NAME rather than at the whole body, and no detail
// echoes the submitted value, which may be a pet parent's personal data.
func clientDetails(errs []error) []error {
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		var detail *huma.ErrorDetail
		if !errors.As(err, &detail) {
			out = append(out, err)
			continue
		}
		rewritten := *detail
		rewritten.Value = nil
		if match := missingProperty.FindStringSubmatch(rewritten.Message); match != nil && rewritten.Location == "body" {
			rewritten.Location = "body." + match[1]
		}
		out = append(out, &rewritten)
	}
	return out
}
