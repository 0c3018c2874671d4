package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	keto "github.com/ory/keto-client-go"
)

// ClinicNamespace is the Keto namespace of clinics; its objects are clinic ids.
const ClinicNamespace = "Clinic"

// ErrPermissionsUnavailable wraps every failure to reach Keto. Callers must
// treat it as a denial (fail closed), never as an allow.
var ErrPermissionsUnavailable = errors.New("permission service unavailable")

// checkTimeout bounds one Keto call, so a slow Keto turns into a prompt
// denial instead of a hung request.
const checkTimeout = 2 * time.Second

// Permissions checks permissions in Keto and writes the relationships that
// grant roles. Reads and writes use separate APIs: the
// write API listens on its own port and is never exposed.
type Permissions struct {
	read  *keto.APIClient
	write *keto.APIClient
}

// NewPermissions returns a Keto client for the given read and write API
// base URLs (for example http://127.0.0.1:4466 and http://127.0.0.1:4467).
func NewPermissions(readURL, writeURL string, httpClient *http.Client) *Permissions {
	return &Permissions{
		read:  newKetoClient(readURL, httpClient),
		write: newKetoClient(writeURL, httpClient),
	}
}

func newKetoClient(baseURL string, httpClient *http.Client) *keto.APIClient {
	cfg := keto.NewConfiguration()
	cfg.Servers = keto.ServerConfigurations{{URL: baseURL}}
	cfg.HTTPClient = httpClient
	return keto.NewAPIClient(cfg)
}

// Check reports whether subject holds permission on object in namespace.
// An error means Keto returned no decision, and the caller must deny.
func (p *Permissions) Check(ctx context.Context, namespace, object, permission string, subject uuid.UUID) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	result, _, err := p.read.PermissionApi.CheckPermission(ctx).
		Namespace(namespace).
		Object(object).
		Relation(permission).
		SubjectId(subject.String()).
		Execute()
	if err != nil {
		return false, fmt.Errorf("%w: check %s on %s:%s: %w", ErrPermissionsUnavailable, permission, namespace, object, err)
	}
	return result.Allowed, nil
}

// GrantClinicRole writes the relationship that gives identityID role in
// clinicID. Writing an existing relationship again is harmless.
func (p *Permissions) GrantClinicRole(ctx context.Context, clinicID, identityID uuid.UUID, role Role) error {
	relation, err := role.relation()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	body := keto.NewCreateRelationshipBody()
	body.SetNamespace(ClinicNamespace)
	body.SetObject(clinicID.String())
	body.SetRelation(relation)
	body.SetSubjectId(identityID.String())
	if _, _, err := p.write.RelationshipApi.CreateRelationship(ctx).CreateRelationshipBody(*body).Execute(); err != nil {
		return fmt.Errorf("%w: grant %s in clinic %s: %w", ErrPermissionsUnavailable, role, clinicID, err)
	}
	return nil
}

// RevokeClinicRole deletes the relationship that gives identityID role in
// clinicID. Deleting a relationship that does not exist is harmless.
func (p *Permissions) RevokeClinicRole(ctx context.Context, clinicID, identityID uuid.UUID, role Role) error {
	relation, err := role.relation()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	_, err = p.write.RelationshipApi.DeleteRelationships(ctx).
		Namespace(ClinicNamespace).
		Object(clinicID.String()).
		Relation(relation).
		SubjectId(identityID.String()).
		Execute()
	if err != nil {
		return fmt.Errorf("%w: revoke %s in clinic %s: %w", ErrPermissionsUnavailable, role, clinicID, err)
	}
	return nil
}

// ClinicRole is one role an identity holds in one clinic.
type ClinicRole struct {
	ClinicID uuid.UUID
	Role     Role
}

// maxListPages bounds how many pages of relationships ClinicRoles reads,
// so a corrupt page token cannot loop forever.
const maxListPages = 20

// ClinicRoles lists the clinic roles held by identityID, as Keto stores them.
func (p *Permissions) ClinicRoles(ctx context.Context, identityID uuid.UUID) ([]ClinicRole, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	var roles []ClinicRole
	pageToken := ""
	for range maxListPages {
		request := p.read.RelationshipApi.GetRelationships(ctx).
			Namespace(ClinicNamespace).
			SubjectId(identityID.String()).
			PageSize(100)
		if pageToken != "" {
			request = request.PageToken(pageToken)
		}
		page, _, err := request.Execute()
		if err != nil {
			return nil, fmt.Errorf("%w: list clinic roles: %w", ErrPermissionsUnavailable, err)
		}
		for _, tuple := range page.RelationTuples {
			role, ok := roleOfRelation(tuple.Relation)
			clinicID, err := uuid.Parse(tuple.Object)
			if !ok || err != nil {
				continue
			}
			roles = append(roles, ClinicRole{ClinicID: clinicID, Role: role})
		}
		pageToken = page.GetNextPageToken()
		if pageToken == "" {
			return roles, nil
		}
	}
	return roles, fmt.Errorf("list clinic roles: more than %d pages", maxListPages)
}
