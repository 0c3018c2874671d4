package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
)

// caller is someone who sends API requests: an account with a session
// token, or an invitee who signs in through a browser and sends cookies.
type caller struct {
	name    string
	token   string
	invitee *invitee
}

// petsCall sends a request with a JSON body (nil for none) as c.
func (s *testServer) petsCall(c caller, method, path string, body any) response {
	s.t.Helper()
	if c.invitee == nil {
		var data []byte
		if body != nil {
			data = mustJSON(s.t, body)
		}
		return s.do(method, path, c.token, data)
	}
	return s.browseJSON(*c.invitee, method, path, body)
}

// petsStaff invites a new person to clinicID with role and signs them in.
func (s *testServer) petsStaff(ownerToken, clinicID, role string) caller {
	s.t.Helper()
	email := newEmail("pets-" + role)
	if r := s.invite(ownerToken, clinicID, email, role); r.status != http.StatusCreated {
		s.t.Fatalf("invite %s: status %d, body %s", role, r.status, r.body)
	}
	person := s.accept(email)
	return caller{name: role, invitee: &person}
}

// petsCreate registers a pet parent and a pet in clinicID as c and returns
// the pet's id.
func (s *testServer) petsCreate(c caller, clinicID, name string) string {
	s.t.Helper()
	r := s.petsCall(c, http.MethodPost, "/v1/clinics/"+clinicID+"/pet-parents",
		map[string]string{"name": "Test Parent", "phone": "+919812345678", "email": "parent@vetvault.test"})
	if r.status != http.StatusCreated {
		s.t.Fatalf("create pet parent as %s: status %d, body %s", c.name, r.status, r.body)
	}
	var parent struct {
		ID string `json:"id"`
	}
	r.json(s.t, &parent)
	r = s.petsCall(c, http.MethodPost, "/v1/clinics/"+clinicID+"/pets",
		map[string]string{"pet_parent_id": parent.ID, "name": name, "species": "Dog", "sex": "female", "date_of_birth": "2021-03-14"})
	if r.status != http.StatusCreated {
		s.t.Fatalf("create pet as %s: status %d, body %s", c.name, r.status, r.body)
	}
	var created struct {
		ID string `json:"id"`
	}
	r.json(s.t, &created)
	return created.ID
}

type recordsBody struct {
	Pet struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"pet"`
	Records []struct {
		Kind         string `json:"kind"`
		Consultation *struct {
			Notes string `json:"notes"`
		} `json:"consultation"`
	} `json:"records"`
}

var (
	consultation  = map[string]string{"notes": "Limping, left hind leg", "diagnosis": "Soft tissue strain", "prescription": "Rest for a week"}
	vitals        = map[string]any{"weight_kg": 12.5, "temperature_c": 38.6, "heart_rate_bpm": 96}
	treatmentNote = map[string]string{"text": "Cold compress applied"}
)

// TestPetsBaselineEndToEnd checks the baseline for pets, contacts and
// clinical records, one built-in role at a time.
func TestPetsBaselineEndToEnd(t *testing.T) {
	s := newTestServer(t)
	ownerAccount := s.signUp(true)
	clinic := s.createClinic(ownerAccount.token, "Pets Baseline Clinic")
	owner := caller{name: "owner", token: ownerAccount.token}
	receptionist := s.petsStaff(owner.token, clinic.ID, "receptionist")
	nurse := s.petsStaff(owner.token, clinic.ID, "nurse")
	vet := s.petsStaff(owner.token, clinic.ID, "veterinarian")
	manager := s.petsStaff(owner.token, clinic.ID, "manager")

	base := "/v1/clinics/" + clinic.ID
	petID := s.petsCreate(receptionist, clinic.ID, "Mithu")
	petPath := base + "/pets/" + petID
	parent := map[string]string{"name": "Another Parent", "phone": "+919812345679"}
	rename := map[string]string{"breed": "Indie"}

	tests := []struct {
		name       string
		caller     caller
		method     string
		path       string
		body       any
		wantStatus int
	}{
		{"receptionist lists pets", receptionist, http.MethodGet, base + "/pets", nil, http.StatusOK},
		{"receptionist reads a pet", receptionist, http.MethodGet, petPath, nil, http.StatusOK},
		{"receptionist reads contacts", receptionist, http.MethodGet, petPath + "/contact", nil, http.StatusOK},
		{"receptionist cannot edit a pet", receptionist, http.MethodPatch, petPath, rename, http.StatusForbidden},
		{"receptionist cannot read records", receptionist, http.MethodGet, petPath + "/records", nil, http.StatusForbidden},
		{"receptionist cannot add vitals", receptionist, http.MethodPost, petPath + "/records/vitals", vitals, http.StatusForbidden},
		{"receptionist cannot add consultations", receptionist, http.MethodPost, petPath + "/records/consultations", consultation, http.StatusForbidden},

		{"nurse reads contacts", nurse, http.MethodGet, petPath + "/contact", nil, http.StatusOK},
		{"nurse cannot register pet parents", nurse, http.MethodPost, base + "/pet-parents", parent, http.StatusForbidden},
		{"nurse edits a pet", nurse, http.MethodPatch, petPath, rename, http.StatusOK},
		{"nurse adds vitals", nurse, http.MethodPost, petPath + "/records/vitals", vitals, http.StatusCreated},
		{"nurse adds treatment notes", nurse, http.MethodPost, petPath + "/records/treatment-notes", treatmentNote, http.StatusCreated},
		{"nurse cannot add consultations", nurse, http.MethodPost, petPath + "/records/consultations", consultation, http.StatusForbidden},
		{"nurse reads records", nurse, http.MethodGet, petPath + "/records", nil, http.StatusOK},
		{"nurse cannot share records", nurse, http.MethodGet, petPath + "/referrals", nil, http.StatusForbidden},

		{"vet adds consultations", vet, http.MethodPost, petPath + "/records/consultations", consultation, http.StatusCreated},
		{"vet adds vitals", vet, http.MethodPost, petPath + "/records/vitals", vitals, http.StatusCreated},
		{"vet reads records", vet, http.MethodGet, petPath + "/records", nil, http.StatusOK},
		{"vet cannot register pet parents", vet, http.MethodPost, base + "/pet-parents", parent, http.StatusForbidden},

		{"manager reads records", manager, http.MethodGet, petPath + "/records", nil, http.StatusOK},
		{"manager cannot add consultations", manager, http.MethodPost, petPath + "/records/consultations", consultation, http.StatusForbidden},
		{"manager cannot add vitals", manager, http.MethodPost, petPath + "/records/vitals", vitals, http.StatusForbidden},
		{"manager registers pet parents", manager, http.MethodPost, base + "/pet-parents", parent, http.StatusCreated},

		{"owner reads records", owner, http.MethodGet, petPath + "/records", nil, http.StatusOK},
		{"owner cannot add consultations", owner, http.MethodPost, petPath + "/records/consultations", consultation, http.StatusForbidden},
		{"owner cannot share records", owner, http.MethodPost, petPath + "/referrals",
			map[string]string{"email": newEmail("x"), "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.petsCall(tt.caller, tt.method, tt.path, tt.body)
			if r.status != tt.wantStatus {
				t.Errorf("status %d, want %d; body %s", r.status, tt.wantStatus, r.body)
			}
		})
	}

	t.Run("pet profile carries no contact details", func(t *testing.T) {
		r := s.petsCall(receptionist, http.MethodGet, petPath, nil)
		if strings.Contains(string(r.body), "+9198") || strings.Contains(string(r.body), "Test Parent") {
			t.Errorf("pet profile %s contains the pet parent's contact details", r.body)
		}
	})

	t.Run("records hold what was added, newest first", func(t *testing.T) {
		var got recordsBody
		s.petsCall(vet, http.MethodGet, petPath+"/records", nil).json(t, &got)
		var kinds []string
		for _, rec := range got.Records {
			kinds = append(kinds, rec.Kind)
		}
		want := "vitals consultation treatment_note vitals"
		if strings.Join(kinds, " ") != want {
			t.Errorf("record kinds %v, want %s", kinds, want)
		}
		if got.Pet.Name != "Mithu" {
			t.Errorf("pet name %q next to the records, want Mithu", got.Pet.Name)
		}
	})

	t.Run("reads and writes are audited", func(t *testing.T) {
		for action, want := range map[string]int{"record.added": 4, "pet_parent.contact_viewed": 2, "pet_parent.created": 2} {
			if n := s.petsClinicEvents(clinic.ID, action); n != want {
				t.Errorf("%d %s events, want %d", n, action, want)
			}
		}
		if n := s.petsClinicEvents(clinic.ID, "records.viewed"); n < 4 {
			t.Errorf("%d records.viewed events, want at least 4", n)
		}
	})
}

// petsClinicEvents counts the clinic's audit events with action.
func (s *testServer) petsClinicEvents(clinicID, action string) int {
	s.t.Helper()
	var n int
	err := s.db.App.InClinic(context.Background(), uuid.MustParse(clinicID), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = $1`, action).Scan(&n)
	})
	if err != nil {
		s.t.Fatalf("count audit events: %v", err)
	}
	return n
}

// TestReferralEndToEnd shares one pet's records of clinic A with the owner
// of clinic B, who reads them and nothing else of A, and loses access on
// revocation and at expiry.
func TestReferralEndToEnd(t *testing.T) {
	s := newTestServer(t)
	ownerA := s.signUp(true)
	clinicA := s.createClinic(ownerA.token, "Referring Clinic")
	vetA := s.petsStaff(ownerA.token, clinicA.ID, "veterinarian")
	receiving := s.signUp(true)
	clinicB := s.createClinic(receiving.token, "Receiving Clinic")
	receiver := caller{name: "receiving vet", token: receiving.token}
	receiverID := s.identityID(receiving.token)

	owner := caller{name: "owner", token: ownerA.token}
	sharedID := s.petsCreate(owner, clinicA.ID, "Mithu")
	otherID := s.petsCreate(owner, clinicA.ID, "Bruno")
	baseA := "/v1/clinics/" + clinicA.ID
	shared := baseA + "/pets/" + sharedID
	for _, petPath := range []string{shared, baseA + "/pets/" + otherID} {
		if r := s.petsCall(vetA, http.MethodPost, petPath+"/records/consultations", consultation); r.status != http.StatusCreated {
			t.Fatalf("add consultation: status %d, body %s", r.status, r.body)
		}
	}
	if r := s.do(http.MethodPost, baseA+"/appointments", ownerA.token, mustJSON(t, booking(clinicA.Branches[0].ID))); r.status != http.StatusCreated {
		t.Fatalf("book appointment: status %d, body %s", r.status, r.body)
	}

	share := func(expiresAt time.Time) string {
		t.Helper()
		r := s.petsCall(vetA, http.MethodPost, shared+"/referrals",
			map[string]string{"email": strings.ToUpper(receiving.email), "expires_at": expiresAt.Format(time.RFC3339Nano)})
		if r.status != http.StatusCreated {
			t.Fatalf("share: status %d, body %s", r.status, r.body)
		}
		var referral struct {
			ID         string `json:"id"`
			IdentityID string `json:"identity_id"`
			Status     string `json:"status"`
		}
		r.json(t, &referral)
		if referral.IdentityID != receiverID || referral.Status != "active" {
			t.Fatalf("referral %s, want an active one to %s", r.body, receiverID)
		}
		return referral.ID
	}
	readRecords := func() int {
		t.Helper()
		return s.petsCall(receiver, http.MethodGet, shared+"/records", nil).status
	}

	if status := readRecords(); status != http.StatusNotFound {
		t.Fatalf("records before any referral: status %d, want 404", status)
	}
	referralID := share(time.Now().Add(time.Hour))

	t.Run("receiver reads the shared pet's records", func(t *testing.T) {
		r := s.petsCall(receiver, http.MethodGet, shared+"/records", nil)
		if r.status != http.StatusOK {
			t.Fatalf("status %d, body %s", r.status, r.body)
		}
		var got recordsBody
		r.json(t, &got)
		if got.Pet.ID != sharedID || len(got.Records) != 1 || got.Records[0].Consultation == nil {
			t.Errorf("records %s, want the shared pet's one consultation", r.body)
		}
	})

	t.Run("receiver reads nothing else", func(t *testing.T) {
		checks := []struct {
			name   string
			method string
			path   string
			body   any
		}{
			{"another pet's records", http.MethodGet, baseA + "/pets/" + otherID + "/records", nil},
			{"the shared pet's profile", http.MethodGet, shared, nil},
			{"the shared pet's contact", http.MethodGet, shared + "/contact", nil},
			{"the shared pet's referrals", http.MethodGet, shared + "/referrals", nil},
			{"the pet list", http.MethodGet, baseA + "/pets", nil},
			{"the appointments", http.MethodGet, baseA + "/appointments", nil},
			{"the clinic", http.MethodGet, baseA, nil},
			{"adding a consultation", http.MethodPost, shared + "/records/consultations", consultation},
			{"adding vitals", http.MethodPost, shared + "/records/vitals", vitals},
			{"sharing onwards", http.MethodPost, shared + "/referrals",
				map[string]string{"email": newEmail("onward"), "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)}},
			{"the records through the own clinic", http.MethodGet, "/v1/clinics/" + clinicB.ID + "/pets/" + sharedID + "/records", nil},
		}
		for _, c := range checks {
			if r := s.petsCall(receiver, c.method, c.path, c.body); r.status != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404; body %s", c.name, r.status, r.body)
			}
		}
	})

	t.Run("a second referral to the same vet conflicts", func(t *testing.T) {
		r := s.petsCall(vetA, http.MethodPost, shared+"/referrals",
			map[string]string{"identity_id": receiverID, "expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)})
		if r.status != http.StatusConflict {
			t.Errorf("status %d, want 409; body %s", r.status, r.body)
		}
	})

	t.Run("revocation ends access at once", func(t *testing.T) {
		if r := s.petsCall(vetA, http.MethodDelete, shared+"/referrals/"+referralID, nil); r.status != http.StatusNoContent {
			t.Fatalf("revoke: status %d, body %s", r.status, r.body)
		}
		if status := readRecords(); status != http.StatusNotFound {
			t.Errorf("records after revocation: status %d, want 404", status)
		}
		if r := s.petsCall(vetA, http.MethodDelete, shared+"/referrals/"+referralID, nil); r.status != http.StatusConflict {
			t.Errorf("second revocation: status %d, want 409", r.status)
		}
		if !strings.Contains(string(s.petsCall(vetA, http.MethodGet, shared+"/referrals", nil).body), `"status":"revoked"`) {
			t.Error("referral list does not show the revoked referral")
		}
	})

	t.Run("expiry ends access without waiting for the sweeper", func(t *testing.T) {
		expiresAt := time.Now().Add(3 * time.Second)
		share(expiresAt)
		if status := readRecords(); status != http.StatusOK {
			t.Fatalf("records before expiry: status %d, want 200", status)
		}
		time.Sleep(time.Until(expiresAt) + 100*time.Millisecond)
		if status := readRecords(); status != http.StatusNotFound {
			t.Errorf("records after expiry, before any sweep: status %d, want 404", status)
		}

		cfg, err := loadConfig()
		if err != nil {
			t.Fatalf("load config: %v", err)
		}
		client := &http.Client{Timeout: 10 * time.Second}
		sweeper := newReferrals(cfg, s.db.App, client, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if ended, err := sweeper.SweepOnce(context.Background()); err != nil || ended != 1 {
			t.Fatalf("SweepOnce = %d, %v; want 1 ended", ended, err)
		}
		permissions := identity.NewPermissions(cfg.KetoReadURL, cfg.KetoWriteURL, client)
		allowed, err := permissions.Check(context.Background(), identity.PetNamespace, sharedID, "view_records", uuid.MustParse(receiverID))
		if err != nil || allowed {
			t.Errorf("Keto view_records after the sweep = %v, %v; want false", allowed, err)
		}
		if status := readRecords(); status != http.StatusNotFound {
			t.Errorf("records after the sweep: status %d, want 404", status)
		}
	})

	t.Run("grants, revocations and expiries are audited", func(t *testing.T) {
		for action, want := range map[string]int{"referral.granted": 2, "referral.revoked": 1, "referral.expired": 1} {
			if n := s.clinicEvents(clinicA.ID, action, receiverID); n != want {
				t.Errorf("%d %s events about the receiver, want %d", n, action, want)
			}
		}
	})
}

// TestPetsBadInputWritesNothing sends invalid requests and checks that each
// gets a 422 naming the field and that nothing was stored.
func TestPetsBadInputWritesNothing(t *testing.T) {
	s := newTestServer(t)
	ownerAccount := s.signUp(true)
	clinic := s.createClinic(ownerAccount.token, "Pets Validation Clinic")
	owner := caller{name: "owner", token: ownerAccount.token}
	vet := s.petsStaff(owner.token, clinic.ID, "veterinarian")
	base := "/v1/clinics/" + clinic.ID
	petID := s.petsCreate(owner, clinic.ID, "Mithu")
	petPath := base + "/pets/" + petID

	admin := testAdmin(t)
	operatorAddress := operatorEmail(t, admin, "pets-operator")
	if _, err := admin.Create(context.Background(), identity.SchemaOperator, operatorAddress); err != nil {
		t.Fatalf("create operator identity: %v", err)
	}
	soon := time.Now().Add(time.Hour).Format(time.RFC3339)

	tests := []struct {
		name      string
		caller    caller
		path      string
		body      any
		wantField string
	}{
		{"parent phone not E.164", owner, base + "/pet-parents", map[string]string{"name": "A", "phone": "77712 34567"}, "body.phone"},
		{"parent phone invalid", owner, base + "/pet-parents", map[string]string{"name": "A", "phone": "+9100077712"}, "body.phone"},
		{"parent email invalid", owner, base + "/pet-parents", map[string]string{"name": "A", "phone": "+919812345678", "email": "nope"}, "body.email"},
		{"parent without name", owner, base + "/pet-parents", map[string]string{"phone": "+919812345678"}, "body.name"},
		{"pet of unknown parent", owner, base + "/pets", map[string]string{"pet_parent_id": uuid.NewString(), "name": "A", "species": "Dog", "sex": "male"}, "body.pet_parent_id"},
		{"pet with unknown sex", owner, base + "/pets", map[string]string{"pet_parent_id": uuid.NewString(), "name": "A", "species": "Dog", "sex": "neutered"}, "body.sex"},
		{"pet born in the future", owner, base + "/pets", map[string]string{"pet_parent_id": uuid.NewString(), "name": "A", "species": "Dog", "sex": "male", "date_of_birth": "2999-01-01"}, "body.date_of_birth"},
		{"pet born on no date", owner, base + "/pets", map[string]string{"pet_parent_id": uuid.NewString(), "name": "A", "species": "Dog", "sex": "male", "date_of_birth": "2023-02-30"}, "body.date_of_birth"},
		{"pet edit with a blank name", owner, petPath, map[string]string{"name": ""}, "body.name"},
		{"pet edit without a field", owner, petPath, map[string]string{}, "body"},
		{"consultation without notes", vet, petPath + "/records/consultations", map[string]string{"diagnosis": "x"}, "body.notes"},
		{"consultation with blank notes", vet, petPath + "/records/consultations", map[string]string{"notes": "   "}, "body.notes"},
		{"vitals without a measurement", vet, petPath + "/records/vitals", map[string]string{"notes": "calm"}, "body.weight_kg"},
		{"vitals with a zero weight", vet, petPath + "/records/vitals", map[string]any{"weight_kg": 0}, "body.weight_kg"},
		{"vitals in Fahrenheit", vet, petPath + "/records/vitals", map[string]any{"temperature_c": 101.5}, "body.temperature_c"},
		{"treatment note with an unknown field", vet, petPath + "/records/treatment-notes", map[string]string{"text": "x", "diagnosis": "y"}, "body.diagnosis"},
		{"referral without a recipient", vet, petPath + "/referrals", map[string]string{"expires_at": soon}, "body.email"},
		{"referral to an unknown email", vet, petPath + "/referrals", map[string]string{"email": newEmail("nobody"), "expires_at": soon}, "body.email"},
		{"referral to an operator", vet, petPath + "/referrals", map[string]string{"email": operatorAddress, "expires_at": soon}, "body.email"},
		{"referral to a member", vet, petPath + "/referrals", map[string]string{"email": ownerAccount.email, "expires_at": soon}, "body.email"},
		{"referral expiring in the past", vet, petPath + "/referrals", map[string]string{"email": newEmail("x"), "expires_at": time.Now().Add(-time.Minute).Format(time.RFC3339)}, "body.expires_at"},
		{"referral for 31 days", vet, petPath + "/referrals", map[string]string{"email": newEmail("x"), "expires_at": time.Now().Add(31 * 24 * time.Hour).Format(time.RFC3339)}, "body.expires_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := http.MethodPost
			if tt.path == petPath {
				method = http.MethodPatch
			}
			r := s.petsCall(tt.caller, method, tt.path, tt.body)
			if r.status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422; body %s", r.status, r.body)
			}
			var p problem
			r.json(t, &p)
			var locations []string
			for _, e := range p.Errors {
				locations = append(locations, e.Location)
			}
			if !strings.Contains(strings.Join(locations, " "), tt.wantField) {
				t.Errorf("problem names %v, want %s; body %s", locations, tt.wantField, r.body)
			}
			if strings.Contains(string(r.body), "77712") {
				t.Errorf("problem %s echoes the submitted phone number", r.body)
			}
		})
	}

	t.Run("nothing was stored", func(t *testing.T) {
		var pets struct {
			Pets []struct {
				Name string `json:"name"`
			} `json:"pets"`
		}
		s.petsCall(owner, http.MethodGet, base+"/pets", nil).json(t, &pets)
		if len(pets.Pets) != 1 || pets.Pets[0].Name != "Mithu" {
			t.Errorf("pets after bad requests: %+v, want only Mithu", pets.Pets)
		}
		var records recordsBody
		s.petsCall(vet, http.MethodGet, petPath+"/records", nil).json(t, &records)
		if len(records.Records) != 0 {
			t.Errorf("%d records after bad requests, want 0", len(records.Records))
		}
		if n := s.petsClinicEvents(clinic.ID, "pet_parent.created"); n != 1 {
			t.Errorf("%d pet parents created, want 1", n)
		}
		if !strings.Contains(string(s.petsCall(vet, http.MethodGet, petPath+"/referrals", nil).body), `"referrals":[]`) {
			t.Error("a referral was stored from a bad request")
		}
	})
}
