package pet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/services/pet"
)

func TestRegistryCreateGetUpdate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	owner := pet.Actor{IdentityID: uuid.New()}
	clinic := f.newClinic(t, owner.IdentityID)

	parent, err := f.registry.CreateParent(ctx, clinic, owner, pet.NewParent{Name: "  Zoya Menon ", Phone: "+919812345678", Email: "Zoya@VetVault.test"})
	if err != nil {
		t.Fatalf("CreateParent: %v", err)
	}
	if parent.Name != "Zoya Menon" || parent.Email != "zoya@vetvault.test" {
		t.Errorf("parent = %q <%s>, want the trimmed name and the lower-case email", parent.Name, parent.Email)
	}
	born := time.Date(2021, 3, 14, 0, 0, 0, 0, time.UTC)
	created, err := f.registry.Create(ctx, clinic, owner, pet.NewPet{
		ParentID: parent.ID, Name: "Mithu", Species: "Dog", Breed: "Indie", Sex: pet.SexFemale, DateOfBirth: born,
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	t.Run("pet inherits the clinic's permissions", func(t *testing.T) {
		for _, permission := range []string{"view", "edit", "view_records"} {
			if !f.allowed(t, created.ID, permission, owner.IdentityID) {
				t.Errorf("owner lacks %s on the new pet, want it through Pet#clinic", permission)
			}
		}
		if f.allowed(t, created.ID, "view", uuid.New()) {
			t.Error("a stranger may view the new pet")
		}
	})

	t.Run("get returns the stored pet", func(t *testing.T) {
		got, err := f.registry.Get(ctx, clinic, created.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.Name != "Mithu" || got.ParentID != parent.ID || !got.DateOfBirth.Equal(born) {
			t.Errorf("Get = %+v, want Mithu of %s born %s", got, parent.ID, born)
		}
	})

	t.Run("update changes only given fields", func(t *testing.T) {
		breed := "Labrador"
		got, err := f.registry.Update(ctx, clinic, created.ID, pet.Change{Breed: &breed})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if got.Breed != "Labrador" || got.Name != "Mithu" || got.Sex != pet.SexFemale {
			t.Errorf("after update = %+v, want only the breed changed", got)
		}
	})

	t.Run("contact returns the parent and audits the read", func(t *testing.T) {
		got, err := f.registry.Contact(ctx, clinic, created.ID, owner)
		if err != nil {
			t.Fatalf("Contact: %v", err)
		}
		if got.ID != parent.ID || got.Phone != "+919812345678" {
			t.Errorf("Contact = %+v, want parent %s", got, parent.ID)
		}
		if n := f.clinicEvents(t, clinic, pet.ActionContactViewed); n != 1 {
			t.Errorf("%d contact_viewed events, want 1", n)
		}
	})
}

func TestRegistryRejectsBadInput(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	owner := pet.Actor{IdentityID: uuid.New()}
	clinic := f.newClinic(t, owner.IdentityID)
	existing := f.newPet(t, clinic, owner)
	tomorrow := time.Now().AddDate(0, 0, 2).Truncate(24 * time.Hour)

	parents := []struct {
		name      string
		in        pet.NewParent
		wantField string
	}{
		{"blank name", pet.NewParent{Name: " ", Phone: "+919812345678"}, "name"},
		{"phone without plus", pet.NewParent{Name: "A", Phone: "919812345678"}, "phone"},
		{"phone not a number", pet.NewParent{Name: "A", Phone: "+910000000000"}, "phone"},
		{"email with a display name", pet.NewParent{Name: "A", Phone: "+919812345678", Email: "Zoya <z@vetvault.test>"}, "email"},
	}
	for _, tt := range parents {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.registry.CreateParent(ctx, clinic, owner, tt.in)
			var invalid *pet.InvalidError
			if !errors.As(err, &invalid) || invalid.Field != tt.wantField {
				t.Errorf("CreateParent error = %v, want an invalid %s", err, tt.wantField)
			}
		})
	}

	pets := []struct {
		name      string
		in        pet.NewPet
		wantField string
	}{
		{"no parent", pet.NewPet{Name: "A", Species: "Dog", Sex: pet.SexMale}, "pet_parent_id"},
		{"blank species", pet.NewPet{ParentID: existing.ParentID, Name: "A", Species: "", Sex: pet.SexMale}, "species"},
		{"unknown sex", pet.NewPet{ParentID: existing.ParentID, Name: "A", Species: "Dog", Sex: "neutered"}, "sex"},
		{"born tomorrow", pet.NewPet{ParentID: existing.ParentID, Name: "A", Species: "Dog", Sex: pet.SexMale, DateOfBirth: tomorrow}, "date_of_birth"},
	}
	for _, tt := range pets {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.registry.Create(ctx, clinic, owner, tt.in)
			var invalid *pet.InvalidError
			if !errors.As(err, &invalid) || invalid.Field != tt.wantField {
				t.Errorf("Create error = %v, want an invalid %s", err, tt.wantField)
			}
		})
	}

	t.Run("unknown parent", func(t *testing.T) {
		_, err := f.registry.Create(ctx, clinic, owner, pet.NewPet{ParentID: uuid.New(), Name: "A", Species: "Dog", Sex: pet.SexMale})
		if !errors.Is(err, pet.ErrParentNotFound) {
			t.Errorf("Create error = %v, want ErrParentNotFound", err)
		}
	})

	list, err := f.registry.List(ctx, clinic, pet.Query{Limit: 10})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 1 {
		t.Errorf("%d pets after only bad requests besides the first, want 1", len(list))
	}
}

// TestStoresIsolateClinics writes a pet parent, a pet, a record and a
// referral as clinic A and reads as clinic B through every service and
// directly in SQL, as the runtime role.
func TestStoresIsolateClinics(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ownerA, ownerB := pet.Actor{IdentityID: uuid.New()}, pet.Actor{IdentityID: uuid.New()}
	clinicA, clinicB := f.newClinic(t, ownerA.IdentityID), f.newClinic(t, ownerB.IdentityID)
	vetA := uuid.New()
	f.grant(t, clinicA, "veterinarians", vetA)
	vetActor := pet.Actor{IdentityID: vetA}

	petA := f.newPet(t, clinicA, ownerA)
	if _, err := f.records.AddConsultation(ctx, clinicA, petA.ID, vetActor, pet.Consultation{Notes: "Healthy"}); err != nil {
		t.Fatalf("AddConsultation in A: %v", err)
	}
	referral, err := f.referrals.Share(ctx, clinicA, petA.ID, vetActor, pet.NewReferral{IdentityID: f.newStaff(t).ID, ExpiresAt: f.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("Share in A: %v", err)
	}

	checks := []struct {
		name string
		call func() error
		want error
	}{
		{"get pet", func() error { _, err := f.registry.Get(ctx, clinicB, petA.ID); return err }, pet.ErrNotFound},
		{"update pet", func() error {
			name := "Stolen"
			_, err := f.registry.Update(ctx, clinicB, petA.ID, pet.Change{Name: &name})
			return err
		}, pet.ErrNotFound},
		{"read contact", func() error { _, err := f.registry.Contact(ctx, clinicB, petA.ID, ownerB); return err }, pet.ErrNotFound},
		{"register a pet of A's parent", func() error {
			_, err := f.registry.Create(ctx, clinicB, ownerB, pet.NewPet{ParentID: petA.ParentID, Name: "X", Species: "Cat", Sex: pet.SexMale})
			return err
		}, pet.ErrParentNotFound},
		{"read records", func() error { _, _, err := f.records.List(ctx, clinicB, petA.ID, ownerB); return err }, pet.ErrNotFound},
		{"add a record", func() error {
			_, err := f.records.AddTreatmentNote(ctx, clinicB, petA.ID, ownerB, pet.TreatmentNote{Text: "x"})
			return err
		}, pet.ErrNotFound},
		{"list referrals", func() error { _, err := f.referrals.List(ctx, clinicB, petA.ID); return err }, pet.ErrNotFound},
		{"revoke the referral", func() error { return f.referrals.Revoke(ctx, clinicB, petA.ID, referral.ID, ownerB) }, pet.ErrReferralNotFound},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); !errors.Is(err, c.want) {
				t.Errorf("as clinic B: error %v, want %v", err, c.want)
			}
		})
	}

	t.Run("list as B is empty", func(t *testing.T) {
		list, err := f.registry.List(ctx, clinicB, pet.Query{Limit: 10})
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list) != 0 {
			t.Errorf("clinic B lists %d pets, want 0", len(list))
		}
	})

	for _, table := range []string{"pet_parents", "pets", "clinical_records", "referrals"} {
		t.Run(table+" rows", func(t *testing.T) {
			var inA, inB int
			for clinic, n := range map[uuid.UUID]*int{clinicA: &inA, clinicB: &inB} {
				err := f.db.App.InClinic(ctx, clinic, func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(n)
				})
				if err != nil {
					t.Fatalf("count %s: %v", table, err)
				}
			}
			if inA != 1 || inB != 0 {
				t.Errorf("%s: clinic A sees %d rows, clinic B %d; want 1 and 0", table, inA, inB)
			}
		})
	}

	t.Run("A's pet survived B's attempts", func(t *testing.T) {
		got, err := f.registry.Get(ctx, clinicA, petA.ID)
		if err != nil || got.Name != "Mithu" {
			t.Errorf("Get in A = %q, %v; want Mithu", got.Name, err)
		}
	})
}

func TestClinicalRecordsAppendOnly(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	owner := pet.Actor{IdentityID: uuid.New()}
	clinic := f.newClinic(t, owner.IdentityID)
	vet := pet.Actor{IdentityID: uuid.New()}
	f.grant(t, clinic, "veterinarians", vet.IdentityID)
	created := f.newPet(t, clinic, owner)
	if _, err := f.records.AddConsultation(ctx, clinic, created.ID, vet, pet.Consultation{Notes: "Healthy"}); err != nil {
		t.Fatalf("AddConsultation: %v", err)
	}

	for _, statement := range []string{
		`UPDATE clinical_records SET content = '{"notes":"changed"}'`,
		`DELETE FROM clinical_records`,
	} {
		err := f.db.App.InClinic(ctx, clinic, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, statement)
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as the runtime role: error %v, want insufficient privilege (42501)", statement, err)
		}
	}

	_, records, err := f.records.List(ctx, clinic, created.ID, vet)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(records) != 1 || records[0].Consultation == nil || records[0].Consultation.Notes != "Healthy" {
		t.Errorf("records = %+v, want the one unchanged consultation", records)
	}
}
