package main

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"testing"

	"vetvault/identity"
	"vetvault/identity/selfservice"
)

func TestSelfServiceRegistrationCreatesStaff(t *testing.T) {
	s := newTestServer(t)
	admin := testAdmin(t)
	ctx := context.Background()
	asOperator := map[string]any{"schema_id": "operator", "schema": "operator", "identity_schema": "operator"}
	asOperatorQuery := url.Values{"schema_id": {"operator"}, "schema": {"operator"}, "identity_schema": {"operator"}}

	tests := []struct {
		name         string
		registration selfservice.Registration
		wantRejected bool
	}{
		{"plain registration", selfservice.Registration{}, false},
		{"schema in the body", selfservice.Registration{ExtraFields: asOperator}, false},
		{"schema in the flow query", selfservice.Registration{FlowQuery: asOperatorQuery}, false},
		{"schema in query and body", selfservice.Registration{FlowQuery: asOperatorQuery, ExtraFields: asOperator}, false},
		{"schema among the traits", selfservice.Registration{ExtraTraits: asOperator}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			registration := tt.registration
			registration.Email = operatorEmail(t, admin, "self-service")
			registration.Password = rand.Text()

			token, err := s.flows.RegisterWith(ctx, registration)
			found, findErr := admin.FindByEmail(ctx, registration.Email)
			if tt.wantRejected {
				if err == nil {
					t.Errorf("registration succeeded, want it rejected")
				}
				if !errors.Is(findErr, identity.ErrIdentityNotFound) {
					t.Errorf("find identity after rejected registration: %+v, error %v; want ErrIdentityNotFound", found, findErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("register: %v", err)
			}
			if findErr != nil {
				t.Fatalf("find registered identity: %v", findErr)
			}
			if found.SchemaID != identity.SchemaStaff {
				t.Fatalf("registered identity has schema %q, want %q", found.SchemaID, identity.SchemaStaff)
			}

			// The settings flow, the other self-service path that writes an
			// identity, cannot switch the schema either.
			err = s.flows.UpdateProfileWith(ctx, token, map[string]any{"email": registration.Email}, asOperator)
			if err != nil {
				t.Logf("profile update with a schema field was rejected: %v", err)
			}
			after, err := admin.Get(ctx, found.ID)
			if err != nil {
				t.Fatalf("get identity after profile update: %v", err)
			}
			if after.SchemaID != identity.SchemaStaff {
				t.Errorf("schema after profile update %q, want %q", after.SchemaID, identity.SchemaStaff)
			}
		})
	}
}
