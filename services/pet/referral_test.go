package pet_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"vetvault/identity"
	"vetvault/services/pet"
)

// sharedPet is a pet of a clinic with a vet who shares its records.
type sharedPet struct {
	clinic uuid.UUID
	vet    pet.Actor
	pet    pet.Pet
}

func (f *fixture) sharedPet(t *testing.T) sharedPet {
	t.Helper()
	owner := uuid.New()
	clinic := f.newClinic(t, owner)
	vet := pet.Actor{IdentityID: uuid.New()}
	f.grant(t, clinic, "veterinarians", vet.IdentityID)
	return sharedPet{clinic: clinic, vet: vet, pet: f.newPet(t, clinic, pet.Actor{IdentityID: owner})}
}

// openExpiries counts the sweeper's index rows, across clinics because the
// table has no tenant.
func (f *fixture) openExpiries(t *testing.T) int {
	t.Helper()
	var n int
	err := f.db.App.InPlatform(context.Background(), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT count(*) FROM referral_expiries`).Scan(&n)
	})
	if err != nil {
		t.Fatalf("count referral expiries: %v", err)
	}
	return n
}

func TestShareRejectsBadRequests(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.sharedPet(t)
	recipient := f.newStaff(t)
	now := f.clock.Now()
	colleague := f.newStaff(t).ID
	f.grant(t, s.clinic, "nurses", colleague)

	tests := []struct {
		name      string
		actor     pet.Actor // s.vet when zero
		in        pet.NewReferral
		wantField string
		wantText  string // a phrase of the message
	}{
		{"no recipient", pet.Actor{}, pet.NewReferral{ExpiresAt: now.Add(time.Hour)}, "email", "is required"},
		{"both email and id", pet.Actor{}, pet.NewReferral{Email: recipient.Email, IdentityID: recipient.ID, ExpiresAt: now.Add(time.Hour)}, "identity_id", "not both"},
		{"unknown email", pet.Actor{}, pet.NewReferral{Email: "nobody-" + uuid.NewString() + "@vetvault.test", ExpiresAt: now.Add(time.Hour)}, "email", "active VetVault staff login"},
		{"unknown identity", pet.Actor{}, pet.NewReferral{IdentityID: uuid.New(), ExpiresAt: now.Add(time.Hour)}, "identity_id", "active VetVault staff login"},
		{"oneself", pet.Actor{IdentityID: recipient.ID}, pet.NewReferral{IdentityID: recipient.ID, ExpiresAt: now.Add(time.Hour)}, "identity_id", "yourself"},
		{"a member of the clinic", pet.Actor{}, pet.NewReferral{IdentityID: colleague, ExpiresAt: now.Add(time.Hour)}, "identity_id", "member of this clinic"},
		{"no expiry", pet.Actor{}, pet.NewReferral{IdentityID: recipient.ID}, "expires_at", "is required"},
		{"expiry now", pet.Actor{}, pet.NewReferral{IdentityID: recipient.ID, ExpiresAt: now}, "expires_at", "in the future"},
		{"expiry past 30 days", pet.Actor{}, pet.NewReferral{IdentityID: recipient.ID, ExpiresAt: now.Add(pet.MaxReferralLifetime + time.Second)}, "expires_at", "30 days"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			actor := tt.actor
			if actor.IdentityID == uuid.Nil {
				actor = s.vet
			}
			_, err := f.referrals.Share(ctx, s.clinic, s.pet.ID, actor, tt.in)
			var invalid *pet.InvalidError
			if !errors.As(err, &invalid) || invalid.Field != tt.wantField {
				t.Fatalf("Share error = %v, want an invalid %s", err, tt.wantField)
			}
			if !strings.Contains(invalid.Message, tt.wantText) {
				t.Errorf("message %q, want it to contain %q", invalid.Message, tt.wantText)
			}
		})
	}

	list, err := f.referrals.List(ctx, s.clinic, s.pet.ID)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(list) != 0 || f.openExpiries(t) != 0 {
		t.Errorf("%d referrals and %d expiries after only bad requests, want none", len(list), f.openExpiries(t))
	}
	if f.allowed(t, s.pet.ID, "view_records", recipient.ID) {
		t.Error("the recipient of rejected requests may view records")
	}
}

func TestReferralLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := f.sharedPet(t)
	recipient := f.newStaff(t)
	reader := pet.Actor{IdentityID: recipient.ID}
	if _, err := f.records.AddConsultation(ctx, s.clinic, s.pet.ID, s.vet, pet.Consultation{Notes: "Limping, left hind"}); err != nil {
		t.Fatalf("AddConsultation: %v", err)
	}
	granted := f.clock.Now()

	referral, err := f.referrals.Share(ctx, s.clinic, s.pet.ID, s.vet, pet.NewReferral{Email: recipient.Email, ExpiresAt: granted.Add(time.Hour)})
	if err != nil {
		t.Fatalf("Share: %v", err)
	}
	if referral.VetID != recipient.ID || referral.Status(granted) != pet.ReferralActive {
		t.Fatalf("Share = %+v, want an active referral to %s", referral, recipient.ID)
	}

	t.Run("recipient reads records and nothing else", func(t *testing.T) {
		_, records, err := f.records.List(ctx, s.clinic, s.pet.ID, reader)
		if err != nil {
			t.Fatalf("List as recipient: %v", err)
		}
		if len(records) != 1 {
			t.Errorf("recipient reads %d records, want 1", len(records))
		}
		for _, permission := range []string{"view", "edit", "add_vitals", "write_records", "share_records"} {
			if f.allowed(t, s.pet.ID, permission, recipient.ID) {
				t.Errorf("recipient holds %s on the pet, want only view_records", permission)
			}
		}
	})

	t.Run("second open referral to the same person conflicts", func(t *testing.T) {
		_, err := f.referrals.Share(ctx, s.clinic, s.pet.ID, s.vet, pet.NewReferral{IdentityID: recipient.ID, ExpiresAt: granted.Add(2 * time.Hour)})
		if !errors.Is(err, pet.ErrReferralExists) {
			t.Errorf("second Share error = %v, want ErrReferralExists", err)
		}
	})

	t.Run("read ends at expiry before any sweep", func(t *testing.T) {
		f.clock.Set(referral.ExpiresAt)
		_, _, err := f.records.List(ctx, s.clinic, s.pet.ID, reader)
		if !errors.Is(err, pet.ErrNotFound) {
			t.Errorf("List at expiry: error %v, want ErrNotFound", err)
		}
		if !f.allowed(t, s.pet.ID, "view_records", recipient.ID) {
			t.Error("the relationship is gone before the sweep, so this case tests nothing")
		}
		if n := f.clinicEvents(t, s.clinic, identity.ActionAccessDenied); n != 1 {
			t.Errorf("%d access.denied events in the clinic's trail, want 1", n)
		}
	})

	t.Run("sweep ends it in Keto and audits it", func(t *testing.T) {
		f.clock.Set(referral.ExpiresAt.Add(time.Second))
		ended, err := f.referrals.SweepOnce(ctx)
		if err != nil || ended != 1 {
			t.Fatalf("SweepOnce = %d, %v; want 1 ended", ended, err)
		}
		if f.allowed(t, s.pet.ID, "view_records", recipient.ID) {
			t.Error("recipient may still view records after the sweep")
		}
		if n := f.clinicEvents(t, s.clinic, pet.ActionReferralExpired); n != 1 {
			t.Errorf("%d referral.expired events, want 1", n)
		}
		list, err := f.referrals.List(ctx, s.clinic, s.pet.ID)
		if err != nil || len(list) != 1 {
			t.Fatalf("List = %d referrals, %v; want 1", len(list), err)
		}
		if got := list[0]; got.EndReason != pet.ReferralExpired || !got.EndedAt.Equal(referral.ExpiresAt) {
			t.Errorf("after the sweep: reason %q, ended %v; want expired at %v", got.EndReason, got.EndedAt, referral.ExpiresAt)
		}
		if again, err := f.referrals.SweepOnce(ctx); err != nil || again != 0 {
			t.Errorf("second SweepOnce = %d, %v; want 0", again, err)
		}
	})

	t.Run("revoke ends a new referral at once", func(t *testing.T) {
		now := f.clock.Now()
		again, err := f.referrals.Share(ctx, s.clinic, s.pet.ID, s.vet, pet.NewReferral{IdentityID: recipient.ID, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			t.Fatalf("Share after expiry: %v", err)
		}
		if err := f.referrals.Revoke(ctx, s.clinic, s.pet.ID, again.ID, s.vet); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if f.allowed(t, s.pet.ID, "view_records", recipient.ID) {
			t.Error("recipient may still view records after the revocation")
		}
		if err := f.referrals.Revoke(ctx, s.clinic, s.pet.ID, again.ID, s.vet); !errors.Is(err, pet.ErrReferralEnded) {
			t.Errorf("second Revoke error = %v, want ErrReferralEnded", err)
		}
		if n := f.clinicEvents(t, s.clinic, pet.ActionReferralRevoked); n != 1 {
			t.Errorf("%d referral.revoked events, want 1", n)
		}
		if n := f.clinicEvents(t, s.clinic, pet.ActionReferralGranted); n != 2 {
			t.Errorf("%d referral.granted events, want 2", n)
		}
		if n := f.openExpiries(t); n != 0 {
			t.Errorf("%d expiries indexed after every referral ended, want 0", n)
		}
	})
}

// TestSweepCoversEveryClinic proves that one sweep, run by the runtime
// role, ends due referrals in several clinics and leaves others alone.
func TestSweepCoversEveryClinic(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := f.clock.Now()
	recipient := f.newStaff(t)

	var due []sharedPet
	for range 2 {
		s := f.sharedPet(t)
		if _, err := f.referrals.Share(ctx, s.clinic, s.pet.ID, s.vet, pet.NewReferral{IdentityID: recipient.ID, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatalf("Share: %v", err)
		}
		due = append(due, s)
	}
	later := f.sharedPet(t)
	if _, err := f.referrals.Share(ctx, later.clinic, later.pet.ID, later.vet, pet.NewReferral{IdentityID: recipient.ID, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatalf("Share: %v", err)
	}

	f.clock.Set(now.Add(2 * time.Minute))
	ended, err := f.referrals.SweepOnce(ctx)
	if err != nil || ended != 2 {
		t.Fatalf("SweepOnce = %d, %v; want 2 ended", ended, err)
	}
	for i, s := range due {
		if f.allowed(t, s.pet.ID, "view_records", recipient.ID) {
			t.Errorf("clinic %d: recipient still views records after the sweep", i)
		}
	}
	if !f.allowed(t, later.pet.ID, "view_records", recipient.ID) {
		t.Error("the referral that is not due lost its relationship")
	}
	if n := f.openExpiries(t); n != 1 {
		t.Errorf("%d expiries indexed, want 1 (the referral not yet due)", n)
	}
}
