package api

// Messages clients see in problem details, kept together so they can be
// reviewed and translated in one place.
const (
	msgSignInRequired          = "sign-in required: send a Kratos session cookie or session token"
	msgSessionInvalid          = "session invalid or expired: sign in again"
	msgSecondFactorPending     = "second factor required: complete sign-in with your authenticator code, security key or a recovery code"
	msgSecondFactorNotEnrolled = "second factor required: enrol an authenticator app or a security key at %s before using VetVault"
	msgStepUpRequired          = "recent sign-in required: this change needs a sign-in within the last %s, so sign in again at %s"
	msgOperatorsNoClinicData   = "platform operators have no access to clinic data"
	msgOperatorsOnly           = "only platform operators may do this"
	msgSessionsUnavailable     = "sign-in service unavailable: try again shortly"
	msgPermissionsUnavailable  = "permission service unavailable: request denied, try again shortly"
	msgClinicNotFound          = "clinic not found"
	msgObjectNotFound          = "%s not found in this clinic"
	msgPermissionDenied        = "your role in this clinic does not allow %s"
	msgAppointmentNotFound     = "appointment not found"
	msgBranchNotFound          = "branch not found in this clinic"
	msgPetNotFound             = "pet not found in this clinic"
	msgPetParentNotFound       = "pet parent not found in this clinic: register them first with POST /v1/clinics/{clinicID}/pet-parents"
	msgEmptyChange             = "give at least one field to change"
	msgReferralNotFound        = "referral not found for this pet"
	msgReferralEnded           = "referral already revoked or expired"
	msgReferralExists          = "this pet's records are already shared with this person: revoke that referral first"
	msgEmailTaken              = "this email already belongs to a staff member or operator: use another email"
	msgValidationFailed        = "validation failed"
	msgInternal                = "internal error"
)
