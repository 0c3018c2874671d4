package main

import (
	"net/http"
	"testing"

	"github.com/google/uuid"
)

// TestForeignObjectsAreNotFound checks that a branch or pet id that is not
// the clinic's, or does not exist, gets 404 even for the clinic's owner,
// who holds every permission on the clinic's own objects.
func TestForeignObjectsAreNotFound(t *testing.T) {
	s := newTestServer(t)
	owner, other := s.signUp(true), s.signUp(true)
	clinic := s.createClinic(owner.token, "Object Clinic")
	foreign := s.createClinic(other.token, "Foreign Clinic")
	base := "/v1/clinics/" + clinic.ID

	paths := map[string]string{
		"unknown branch":          base + "/branches/" + uuid.NewString() + "/appointments",
		"another clinic's branch": base + "/branches/" + foreign.Branches[0].ID + "/appointments",
		"unknown pet":             base + "/pets/" + uuid.NewString() + "/records",
	}
	for name, path := range paths {
		r := s.do(http.MethodGet, path, owner.token, nil)
		if r.status != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404; body %s", name, r.status, r.body)
		}
	}
	if r := s.do(http.MethodGet, base+"/branches/"+clinic.Branches[0].ID+"/appointments", owner.token, nil); r.status != http.StatusOK {
		t.Errorf("own branch: status %d, want 200; body %s", r.status, r.body)
	}
}
