// Package pet keeps a clinic's patients and everything that belongs to one
// patient: the pet's profile, its pet parent's contact details, its clinical
// records, and referrals that share those records with a vet of another
// clinic.
//
// Who may call which method is decided before the call, by the API's
// permission check in Keto. The one access rule decided here is the referral's
// expiry on the read path of clinical records, because Keto relationships
// carry no time: see Records.List.
package pet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nyaruka/phonenumbers"

	"vetvault/identity"
)

// Errors the services return. The API layer maps them to status codes.
var (
	ErrNotFound         = errors.New("pet not found in this clinic")
	ErrParentNotFound   = errors.New("pet parent not found in this clinic")
	ErrReferralNotFound = errors.New("referral not found for this pet")
	ErrReferralEnded    = errors.New("referral already revoked or expired")
	ErrReferralExists   = errors.New("this pet's records are already shared with this person: revoke that referral first")
	ErrEmptyChange      = errors.New("the change names no field")
)

// InvalidError names the field of a request that fails validation, in the
// JSON spelling clients send.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Message)
}

// Actor is the signed-in person making a request, with where they made it
// from, for the audit trail.
type Actor struct {
	IdentityID uuid.UUID
	IP         string
	UserAgent  string
}

// Permissions answers permission questions from Keto. Relationships are
// written and deleted through tenants.Outbox instead, in the transaction of
// the change that justifies them.
type Permissions interface {
	Check(ctx context.Context, namespace, object, permission string, subject uuid.UUID) (bool, error)
}

// Audit actions of this package. They extend the actions in identity.
const (
	ActionParentCreated   identity.Action = "pet_parent.created"
	ActionContactViewed   identity.Action = "pet_parent.contact_viewed"
	ActionRecordAdded     identity.Action = "record.added"
	ActionRecordsViewed   identity.Action = "records.viewed"
	ActionReferralGranted identity.Action = "referral.granted"
	ActionReferralRevoked identity.Action = "referral.revoked"
	ActionReferralExpired identity.Action = "referral.expired"
)

// Keto relations and permissions on a Pet and a Clinic, as
// infra/keto/namespaces.keto.ts defines them.
const (
	relationClinic       = "clinic"
	relationReferredVets = "referred_vets"
	permissionViewRecord = "view_records"
	permissionMember     = "view" // any role in the clinic
)

// clinicRelationship is Pet:<petID>#clinic@Clinic:<clinicID>, which makes
// the pet inherit the clinic's permissions.
//
// NOTE: tenants.Reconciler retries pending outbox rows of pets and
// referrals, but its drift repair compares only Clinic, Branch and
// ClinicRole objects with the database. Comparing each Pet object too (one
// clinic relation per pets row, one referred_vets relation per open
// referral) would repair Pet relationships changed in Keto by hand.
func clinicRelationship(clinicID, petID uuid.UUID) identity.Relationship {
	return identity.Relationship{
		Namespace:  identity.PetNamespace,
		Object:     petID.String(),
		Relation:   relationClinic,
		SubjectSet: &identity.SubjectSet{Namespace: identity.ClinicNamespace, Object: clinicID.String()},
	}
}

// referralRelationship is Pet:<petID>#referred_vets@<vetID>, which lets the
// vet read the pet's clinical records.
func referralRelationship(petID, vetID uuid.UUID) identity.Relationship {
	return identity.Relationship{
		Namespace: identity.PetNamespace,
		Object:    petID.String(),
		Relation:  relationReferredVets,
		SubjectID: vetID,
	}
}

// event returns an audit event of clinicID by actor at at.
func event(action identity.Action, actor Actor, clinicID, target uuid.UUID, at time.Time, detail map[string]string) identity.Event {
	return identity.Event{
		Action:    action,
		ActorID:   actor.IdentityID,
		TargetID:  target,
		ClinicID:  clinicID,
		IP:        actor.IP,
		UserAgent: actor.UserAgent,
		Detail:    detail,
		At:        at,
	}
}

// trimText trims value and checks that it has between minimum and maximum
// characters.
func trimText(field, value string, minimum, maximum int) (string, error) {
	value = strings.TrimSpace(value)
	switch n := utf8.RuneCountInString(value); {
	case n < minimum && minimum == 1:
		return value, &InvalidError{Field: field, Message: "must not be blank"}
	case n < minimum:
		return value, &InvalidError{Field: field, Message: fmt.Sprintf("must be at least %d characters", minimum)}
	case n > maximum:
		return value, &InvalidError{Field: field, Message: fmt.Sprintf("must be at most %d characters", maximum)}
	}
	return value, nil
}

// checkE164 accepts a phone number only when it is already written in E.164
// and is a valid number for its country.
func checkE164(field, phone string) error {
	invalid := &InvalidError{Field: field, Message: "must be an E.164 number such as +919812345678"}
	if !strings.HasPrefix(phone, "+") {
		return invalid
	}
	number, err := phonenumbers.Parse(phone, "")
	if err != nil || !phonenumbers.IsValidNumber(number) {
		return invalid
	}
	if phonenumbers.Format(number, phonenumbers.E164) != phone {
		return invalid
	}
	return nil
}
