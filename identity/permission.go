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

// Keto namespaces; their objects are the ids of clinics, branches, pets and
// custom roles. infra/keto/namespaces.keto.ts defines them.
const (
	ClinicNamespace     = "Clinic"
	BranchNamespace     = "Branch"
	PetNamespace        = "Pet"
	ClinicRoleNamespace = "ClinicRole"
)

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

// ClinicRole is one role an identity holds in one clinic: a built-in role
// for the whole clinic, a built-in role at one branch (BranchID set), or a
// custom role (CustomRoleID set, Role empty).
type ClinicRole struct {
	ClinicID     uuid.UUID
	Role         Role
	BranchID     uuid.UUID
	CustomRoleID uuid.UUID
}

// maxListPages bounds how many pages of relationships a listing reads, so a
// corrupt page token cannot loop forever.
const maxListPages = 20

// ClinicRoles lists every role identityID holds, as Keto stores them:
// built-in roles of whole clinics, built-in roles at branches, and custom
// roles. A branch or custom role whose clinic Keto cannot name (a custom
// role that grants nothing) is left out, because it grants nothing.
func (p *Permissions) ClinicRoles(ctx context.Context, identityID uuid.UUID) ([]ClinicRole, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	clinicTuples, err := p.relationshipsOf(ctx, ClinicNamespace, identityID)
	if err != nil {
		return nil, err
	}
	var roles []ClinicRole
	for _, tuple := range clinicTuples {
		role, ok := roleOfRelation(tuple.Relation)
		clinicID, err := uuid.Parse(tuple.Object)
		if ok && err == nil {
			roles = append(roles, ClinicRole{ClinicID: clinicID, Role: role})
		}
	}

	branchTuples, err := p.relationshipsOf(ctx, BranchNamespace, identityID)
	if err != nil {
		return nil, err
	}
	for _, tuple := range branchTuples {
		role, ok := roleOfRelation(tuple.Relation)
		branchID, err := uuid.Parse(tuple.Object)
		if !ok || err != nil {
			continue
		}
		clinicID, err := p.parentClinic(ctx, Relationship{Namespace: BranchNamespace, Object: branchID.String(), Relation: "clinic"})
		if err != nil {
			return nil, err
		}
		if clinicID != uuid.Nil {
			roles = append(roles, ClinicRole{ClinicID: clinicID, Role: role, BranchID: branchID})
		}
	}

	customTuples, err := p.relationshipsOf(ctx, ClinicRoleNamespace, identityID)
	if err != nil {
		return nil, err
	}
	for _, tuple := range customTuples {
		roleID, err := uuid.Parse(tuple.Object)
		if tuple.Relation != "members" || err != nil {
			continue
		}
		clinicID, err := p.customRoleClinic(ctx, roleID)
		if err != nil {
			return nil, err
		}
		if clinicID != uuid.Nil {
			roles = append(roles, ClinicRole{ClinicID: clinicID, CustomRoleID: roleID})
		}
	}
	return roles, nil
}

// relationshipsOf lists the tuples in namespace whose subject is identityID.
func (p *Permissions) relationshipsOf(ctx context.Context, namespace string, identityID uuid.UUID) ([]keto.Relationship, error) {
	var found []keto.Relationship
	pageToken := ""
	for range maxListPages {
		request := p.read.RelationshipApi.GetRelationships(ctx).
			Namespace(namespace).
			SubjectId(identityID.String()).
			PageSize(100)
		if pageToken != "" {
			request = request.PageToken(pageToken)
		}
		page, _, err := request.Execute()
		if err != nil {
			return nil, fmt.Errorf("%w: list %s relationships of an identity: %w", ErrPermissionsUnavailable, namespace, err)
		}
		found = append(found, page.RelationTuples...)
		pageToken = page.GetNextPageToken()
		if pageToken == "" {
			return found, nil
		}
	}
	return found, fmt.Errorf("list %s relationships of an identity: more than %d pages", namespace, maxListPages)
}

// parentClinic returns the clinic that the tuples matching r point to with a
// Clinic subject set, or uuid.Nil when there is none.
func (p *Permissions) parentClinic(ctx context.Context, r Relationship) (uuid.UUID, error) {
	page, _, err := p.read.RelationshipApi.GetRelationships(ctx).
		Namespace(r.Namespace).Object(r.Object).Relation(r.Relation).PageSize(10).Execute()
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: find clinic of %s:%s: %w", ErrPermissionsUnavailable, r.Namespace, r.Object, err)
	}
	for _, tuple := range page.RelationTuples {
		if set := tuple.SubjectSet; set != nil && set.Namespace == ClinicNamespace {
			if id, err := uuid.Parse(set.Object); err == nil {
				return id, nil
			}
		}
	}
	return uuid.Nil, nil
}

// customRoleClinic returns the clinic whose grants_* relations name the
// members of custom role roleID, or uuid.Nil when it grants nothing.
func (p *Permissions) customRoleClinic(ctx context.Context, roleID uuid.UUID) (uuid.UUID, error) {
	page, _, err := p.read.RelationshipApi.GetRelationships(ctx).
		Namespace(ClinicNamespace).
		SubjectSetNamespace(ClinicRoleNamespace).
		SubjectSetObject(roleID.String()).
		SubjectSetRelation("members").
		PageSize(1).Execute()
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: find clinic of custom role %s: %w", ErrPermissionsUnavailable, roleID, err)
	}
	for _, tuple := range page.RelationTuples {
		if id, err := uuid.Parse(tuple.Object); err == nil {
			return id, nil
		}
	}
	return uuid.Nil, nil
}

// Relationship is one Keto relation tuple: Namespace:Object#Relation@Subject.
// The subject is either a user (SubjectID) or a subject set, such as the
// members of a custom role or a parent object (a Pet's clinic).
type Relationship struct {
	Namespace  string
	Object     string
	Relation   string
	SubjectID  uuid.UUID
	SubjectSet *SubjectSet
}

// SubjectSet is the subject Namespace:Object#Relation; an empty Relation
// names the object itself, as OPL relations typed with a class expect.
type SubjectSet struct {
	Namespace string
	Object    string
	Relation  string
}

// String formats r as Keto does, for logs and errors. It contains ids only.
func (r Relationship) String() string {
	subject := r.SubjectID.String()
	if r.SubjectSet != nil {
		subject = r.SubjectSet.Namespace + ":" + r.SubjectSet.Object
		if r.SubjectSet.Relation != "" {
			subject += "#" + r.SubjectSet.Relation
		}
	}
	return r.Namespace + ":" + r.Object + "#" + r.Relation + "@" + subject
}

// Write creates r in Keto. Writing an existing relationship again is harmless.
func (p *Permissions) Write(ctx context.Context, r Relationship) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	body := keto.NewCreateRelationshipBody()
	body.SetNamespace(r.Namespace)
	body.SetObject(r.Object)
	body.SetRelation(r.Relation)
	if r.SubjectSet != nil {
		body.SetSubjectSet(*keto.NewSubjectSet(r.SubjectSet.Namespace, r.SubjectSet.Object, r.SubjectSet.Relation))
	} else {
		body.SetSubjectId(r.SubjectID.String())
	}
	if _, _, err := p.write.RelationshipApi.CreateRelationship(ctx).CreateRelationshipBody(*body).Execute(); err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrPermissionsUnavailable, r, err)
	}
	return nil
}

// Delete removes r from Keto. Deleting a missing relationship is harmless.
func (p *Permissions) Delete(ctx context.Context, r Relationship) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	request := p.write.RelationshipApi.DeleteRelationships(ctx).
		Namespace(r.Namespace).
		Object(r.Object).
		Relation(r.Relation)
	if r.SubjectSet != nil {
		request = request.SubjectSetNamespace(r.SubjectSet.Namespace).
			SubjectSetObject(r.SubjectSet.Object).
			SubjectSetRelation(r.SubjectSet.Relation)
	} else {
		request = request.SubjectId(r.SubjectID.String())
	}
	if _, err := request.Execute(); err != nil {
		return fmt.Errorf("%w: delete %s: %w", ErrPermissionsUnavailable, r, err)
	}
	return nil
}

// Relationships lists every relationship whose object is namespace:object,
// for reconciling Keto with the database.
func (p *Permissions) Relationships(ctx context.Context, namespace, object string) ([]Relationship, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()

	var found []Relationship
	pageToken := ""
	for range maxListPages {
		request := p.read.RelationshipApi.GetRelationships(ctx).Namespace(namespace).Object(object).PageSize(100)
		if pageToken != "" {
			request = request.PageToken(pageToken)
		}
		page, _, err := request.Execute()
		if err != nil {
			return nil, fmt.Errorf("%w: list relationships of %s:%s: %w", ErrPermissionsUnavailable, namespace, object, err)
		}
		for _, tuple := range page.RelationTuples {
			r := Relationship{Namespace: tuple.Namespace, Object: tuple.Object, Relation: tuple.Relation}
			if set := tuple.SubjectSet; set != nil {
				r.SubjectSet = &SubjectSet{Namespace: set.Namespace, Object: set.Object, Relation: set.Relation}
			} else if id, err := uuid.Parse(tuple.GetSubjectId()); err == nil {
				r.SubjectID = id
			} else {
				continue // a subject that is not an identity id was not written by VetVault
			}
			found = append(found, r)
		}
		pageToken = page.GetNextPageToken()
		if pageToken == "" {
			return found, nil
		}
	}
	return found, fmt.Errorf("list relationships of %s:%s: more than %d pages", namespace, object, maxListPages)
}

// ParentClinic returns the clinic that a branch or pet belongs to, as its
// "clinic" relationship in Keto names it, or uuid.Nil when Keto has none.
func (p *Permissions) ParentClinic(ctx context.Context, namespace string, object uuid.UUID) (uuid.UUID, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	return p.parentClinic(ctx, Relationship{Namespace: namespace, Object: object.String(), Relation: "clinic"})
}
