package api

import (
	"context"
	"errors"

	"github.com/danielgtaylor/huma/v2"

	"vetvault/identity"
	"vetvault/services/appointment"
	"vetvault/services/pet"
	"vetvault/services/role"
	"vetvault/services/staff"
	"vetvault/tenants"
)

// problem maps an error from a service to the problem the client receives. Errors
// it does not know are logged here, once, and become a 500 that quotes only
// the request id.
func (h *handlers) problem(ctx context.Context, operation string, err error) error {
	var invalidBooking *appointment.InvalidBookingError
	var invalidClinic *tenants.InvalidClinicError
	var invalidInvite *staff.InvalidInviteError
	var invalidPet *pet.InvalidError
	var invalidRole *role.InvalidError
	switch {
	case errors.As(err, &invalidBooking):
		return fieldProblem(invalidBooking.Field, invalidBooking.Message)
	case errors.As(err, &invalidClinic):
		return fieldProblem(invalidClinic.Field, invalidClinic.Message)
	case errors.Is(err, appointment.ErrBranchNotFound):
		return fieldProblem("branch_id", msgBranchNotFound)
	case errors.Is(err, appointment.ErrNotFound):
		return huma.Error404NotFound(msgAppointmentNotFound)
	case errors.Is(err, tenants.ErrClinicNotFound):
		return huma.Error404NotFound(msgClinicNotFound)
	case errors.As(err, &invalidInvite):
		return fieldProblem(invalidInvite.Field, invalidInvite.Message)
	case errors.Is(err, staff.ErrBranchNotFound):
		return fieldProblem("branch_id", msgBranchNotFound)
	case errors.Is(err, staff.ErrMemberNotFound):
		return huma.Error404NotFound(err.Error())
	case errors.Is(err, staff.ErrSessionNotFound):
		return huma.Error404NotFound(err.Error())
	case errors.Is(err, staff.ErrOwnersOnly), errors.Is(err, staff.ErrCannotTargetSelf):
		return huma.Error403Forbidden(err.Error())
	case errors.Is(err, staff.ErrAlreadyMember), errors.Is(err, staff.ErrOperatorEmail), errors.Is(err, staff.ErrLastOwner):
		return huma.Error409Conflict(err.Error())
	case errors.As(err, &invalidPet):
		return fieldProblem(invalidPet.Field, invalidPet.Message)
	case errors.Is(err, pet.ErrEmptyChange):
		return huma.Error422UnprocessableEntity(msgValidationFailed, &huma.ErrorDetail{Location: "body", Message: msgEmptyChange})
	case errors.Is(err, pet.ErrParentNotFound):
		return fieldProblem("pet_parent_id", msgPetParentNotFound)
	case errors.Is(err, pet.ErrNotFound):
		return huma.Error404NotFound(msgPetNotFound)
	case errors.Is(err, pet.ErrReferralNotFound):
		return huma.Error404NotFound(msgReferralNotFound)
	case errors.Is(err, pet.ErrReferralEnded):
		return huma.Error409Conflict(msgReferralEnded)
	case errors.Is(err, pet.ErrReferralExists):
		return huma.Error409Conflict(msgReferralExists)
	case errors.As(err, &invalidRole):
		return fieldProblem(invalidRole.Field, invalidRole.Message)
	case roleStatus(err) != 0:
		return huma.NewError(roleStatus(err), roleMessage(err))
	case errors.Is(err, identity.ErrPermissionsUnavailable):
		h.log.ErrorContext(ctx, "permission service failed", "operation", operation, "err", err, "request_id", RequestIDFrom(ctx))
		return huma.Error503ServiceUnavailable(withRequestID(msgPermissionsUnavailable, RequestIDFrom(ctx)))
	case errors.Is(err, identity.ErrSessionsUnavailable):
		h.log.ErrorContext(ctx, "identity service failed", "operation", operation, "err", err, "request_id", RequestIDFrom(ctx))
		return huma.Error503ServiceUnavailable(withRequestID(msgSessionsUnavailable, RequestIDFrom(ctx)))
	default:
		h.log.ErrorContext(ctx, "operation failed", "operation", operation, "err", err, "request_id", RequestIDFrom(ctx))
		return huma.Error500InternalServerError(withRequestID(msgInternal, RequestIDFrom(ctx)))
	}
}

// fieldProblem is a 422 naming one field of the request body.
func fieldProblem(field, message string) error {
	return huma.Error422UnprocessableEntity(msgValidationFailed, &huma.ErrorDetail{
		Location: "body." + field,
		Message:  message,
	})
}
