package pet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"vetvault/identity"
	"vetvault/services/audit"
	"vetvault/tenants"
)

// Kind is the kind of a clinical record entry. Each kind has its own API
// operation and Keto permission: consultations need write_records (vets),
// vitals and treatment notes need add_vitals (nurses and vets).
type Kind string

// The kinds of entries.
const (
	KindConsultation  Kind = "consultation"
	KindVitals        Kind = "vitals"
	KindTreatmentNote Kind = "treatment_note"
)

// Consultation is a vet's entry: clinical notes, and the diagnosis and
// prescription when there are any.
type Consultation struct {
	Notes        string `json:"notes"`
	Diagnosis    string `json:"diagnosis,omitempty"`
	Prescription string `json:"prescription,omitempty"`
}

// Vitals are measurements taken by a nurse or vet. At least one
// measurement is present, and a nil one was not taken.
type Vitals struct {
	WeightKg           *float64 `json:"weight_kg,omitempty"`
	TemperatureC       *float64 `json:"temperature_c,omitempty"`
	HeartRateBPM       *int     `json:"heart_rate_bpm,omitempty"`
	RespiratoryRateBPM *int     `json:"respiratory_rate_bpm,omitempty"`
	Notes              string   `json:"notes,omitempty"`
}

// TreatmentNote is a nurse's or vet's note on treatment given.
type TreatmentNote struct {
	Text string `json:"text"`
}

// Record is one entry of a pet's clinical record. Exactly one of
// Consultation, Vitals and TreatmentNote is set, matching Kind. The JSON
// tags of those types are the stored form.
type Record struct {
	ID            uuid.UUID
	ClinicID      uuid.UUID
	PetID         uuid.UUID
	Kind          Kind
	RecordedBy    uuid.UUID
	RecordedAt    time.Time
	Consultation  *Consultation
	Vitals        *Vitals
	TreatmentNote *TreatmentNote
}

// Limits on entries. Vital signs are bounded to what a living animal in a
// clinic can show, to catch unit slips (grams typed as kilograms, °F as °C).
const (
	maxNotes         = 10000
	maxDiagnosis     = 2000
	maxPrescription  = 4000
	maxTreatmentNote = 4000
	maxVitalsNotes   = 1000
	maxWeightKg      = 2000
	minTemperatureC  = 25
	maxTemperatureC  = 45
	maxHeartRate     = 400
	maxRespiratory   = 200
	// MaxRecords is the largest number of entries one read returns, newest
	// first.
	MaxRecords = 1000
)

func (c Consultation) normalise() (Consultation, error) {
	var err error
	if c.Notes, err = trimText("notes", c.Notes, 1, maxNotes); err != nil {
		return c, err
	}
	if c.Diagnosis, err = trimText("diagnosis", c.Diagnosis, 0, maxDiagnosis); err != nil {
		return c, err
	}
	if c.Prescription, err = trimText("prescription", c.Prescription, 0, maxPrescription); err != nil {
		return c, err
	}
	return c, nil
}

func (v Vitals) normalise() (Vitals, error) {
	if v.WeightKg == nil && v.TemperatureC == nil && v.HeartRateBPM == nil && v.RespiratoryRateBPM == nil {
		return v, &InvalidError{Field: "weight_kg", Message: "at least one of weight_kg, temperature_c, heart_rate_bpm and respiratory_rate_bpm is required"}
	}
	if v.WeightKg != nil && (*v.WeightKg <= 0 || *v.WeightKg > maxWeightKg) {
		return v, &InvalidError{Field: "weight_kg", Message: fmt.Sprintf("must be more than 0 and at most %d", maxWeightKg)}
	}
	if v.TemperatureC != nil && (*v.TemperatureC < minTemperatureC || *v.TemperatureC > maxTemperatureC) {
		return v, &InvalidError{Field: "temperature_c", Message: fmt.Sprintf("must be from %d to %d degrees Celsius", minTemperatureC, maxTemperatureC)}
	}
	if v.HeartRateBPM != nil && (*v.HeartRateBPM < 1 || *v.HeartRateBPM > maxHeartRate) {
		return v, &InvalidError{Field: "heart_rate_bpm", Message: fmt.Sprintf("must be from 1 to %d", maxHeartRate)}
	}
	if v.RespiratoryRateBPM != nil && (*v.RespiratoryRateBPM < 1 || *v.RespiratoryRateBPM > maxRespiratory) {
		return v, &InvalidError{Field: "respiratory_rate_bpm", Message: fmt.Sprintf("must be from 1 to %d", maxRespiratory)}
	}
	var err error
	v.Notes, err = trimText("notes", v.Notes, 0, maxVitalsNotes)
	return v, err
}

func (n TreatmentNote) normalise() (TreatmentNote, error) {
	var err error
	n.Text, err = trimText("text", n.Text, 1, maxTreatmentNote)
	return n, err
}

// Records appends to and reads pets' clinical records.
type Records struct {
	db          *tenants.DB
	permissions Permissions
	now         func() time.Time
}

// NewRecords returns the clinical records service.
func NewRecords(db *tenants.DB, permissions Permissions, now func() time.Time) *Records {
	return &Records{db: db, permissions: permissions, now: now}
}

// AddConsultation appends a consultation by actor to a pet's record.
func (r *Records) AddConsultation(ctx context.Context, clinicID, petID uuid.UUID, actor Actor, entry Consultation) (Record, error) {
	entry, err := entry.normalise()
	if err != nil {
		return Record{}, err
	}
	return r.add(ctx, clinicID, petID, actor, Record{Kind: KindConsultation, Consultation: &entry}, entry)
}

// AddVitals appends vital signs measured by actor to a pet's record.
func (r *Records) AddVitals(ctx context.Context, clinicID, petID uuid.UUID, actor Actor, entry Vitals) (Record, error) {
	entry, err := entry.normalise()
	if err != nil {
		return Record{}, err
	}
	return r.add(ctx, clinicID, petID, actor, Record{Kind: KindVitals, Vitals: &entry}, entry)
}

// AddTreatmentNote appends a treatment note by actor to a pet's record.
func (r *Records) AddTreatmentNote(ctx context.Context, clinicID, petID uuid.UUID, actor Actor, entry TreatmentNote) (Record, error) {
	entry, err := entry.normalise()
	if err != nil {
		return Record{}, err
	}
	return r.add(ctx, clinicID, petID, actor, Record{Kind: KindTreatmentNote, TreatmentNote: &entry}, entry)
}

// add stores record, whose entry is content, and audits it in one
// transaction.
func (r *Records) add(ctx context.Context, clinicID, petID uuid.UUID, actor Actor, record Record, content any) (Record, error) {
	encoded, err := json.Marshal(content)
	if err != nil {
		return Record{}, fmt.Errorf("encode %s: %w", record.Kind, err)
	}
	if record.ID, err = uuid.NewV7(); err != nil {
		return Record{}, fmt.Errorf("generate record id: %w", err)
	}
	record.ClinicID, record.PetID, record.RecordedBy = clinicID, petID, actor.IdentityID
	record.RecordedAt = r.now()

	err = r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO clinical_records (tenant_id, id, pet_id, kind, content, recorded_by, recorded_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			clinicID, record.ID, petID, string(record.Kind), encoded, actor.IdentityID, record.RecordedAt)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("insert %s: %w", record.Kind, err)
		}
		return audit.Append(ctx, tx, event(ActionRecordAdded, actor, clinicID, uuid.Nil, record.RecordedAt, map[string]string{
			"pet_id": petID.String(), "record_id": record.ID.String(), "kind": string(record.Kind),
		}))
	})
	if err != nil {
		return Record{}, fmt.Errorf("add %s to pet %s in clinic %s: %w", record.Kind, petID, clinicID, err)
	}
	return record, nil
}

// List returns a pet of clinicID with its clinical record, newest entry
// first, and audits that reader read it.
//
// The API has already checked view_records on the pet in Keto, which a
// reader holds through a role in the pet's clinic or through a referral.
// Keto relationships carry no expiry, and the sweeper deletes an expired
// referral's relationship only on its next run. So a reader without
// view_records on the clinic is served only while they hold an open
// referral of this pet whose expiry is still ahead, and access ends exactly
// at expiry whenever the sweeper runs. Anyone else gets ErrNotFound, and
// the denial is audited.
func (r *Records) List(ctx context.Context, clinicID, petID uuid.UUID, reader Actor) (Pet, []Record, error) {
	byRole, err := r.permissions.Check(ctx, identity.ClinicNamespace, clinicID.String(), permissionViewRecord, reader.IdentityID)
	if err != nil {
		return Pet{}, nil, fmt.Errorf("check clinic permission to read records: %w", err)
	}

	now := r.now()
	var found Pet
	var records []Record
	denied := false
	err = r.db.InClinic(ctx, clinicID, func(tx pgx.Tx) error {
		detail := map[string]string{"pet_id": petID.String(), "via": "clinic_role"}
		if !byRole {
			referral, err := readerReferral(ctx, tx, clinicID, petID, reader.IdentityID)
			if err != nil {
				return err
			}
			if !referral.grants(now) {
				denied = true
				return audit.Append(ctx, tx, deniedEvent(clinicID, petID, reader, referral, now))
			}
			detail["via"] = "referral"
			detail["referral_id"] = referral.ID.String()
		}

		var err error
		found, err = scanPet(tx.QueryRow(ctx, `SELECT `+petColumns+` FROM pets WHERE tenant_id = $1 AND id = $2`, clinicID, petID))
		if err != nil {
			return err
		}
		if records, err = selectRecords(ctx, tx, clinicID, petID); err != nil {
			return err
		}
		return audit.Append(ctx, tx, event(ActionRecordsViewed, reader, clinicID, uuid.Nil, now, detail))
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Pet{}, nil, ErrNotFound
	case err != nil:
		return Pet{}, nil, fmt.Errorf("read records of pet %s in clinic %s: %w", petID, clinicID, err)
	case denied:
		return Pet{}, nil, ErrNotFound
	}
	return found, records, nil
}

// readerReferral returns the referral of petID to reader that matters for
// access: the open one if there is one, else the latest. Its ID is uuid.Nil
// when reader never held one.
func readerReferral(ctx context.Context, tx pgx.Tx, clinicID, petID, reader uuid.UUID) (Referral, error) {
	referral, err := scanReferral(tx.QueryRow(ctx, `SELECT `+referralColumns+` FROM referrals
		WHERE tenant_id = $1 AND pet_id = $2 AND vet_id = $3
		ORDER BY ended_at IS NULL DESC, granted_at DESC LIMIT 1`, clinicID, petID, reader))
	if errors.Is(err, pgx.ErrNoRows) {
		return Referral{}, nil
	}
	if err != nil {
		return Referral{}, fmt.Errorf("select referral: %w", err)
	}
	return referral, nil
}

// deniedEvent is the audit event of a records read rejected here. A reader
// who held a referral of this pet is audited in the clinic's trail, so the
// clinic's review lists reads attempted after expiry. Anyone else goes to
// the platform's security events, because an outsider's probe must not
// write into a clinic.
func deniedEvent(clinicID, petID uuid.UUID, reader Actor, referral Referral, now time.Time) identity.Event {
	detail := map[string]string{
		"permission": permissionViewRecord,
		"object":     identity.PetNamespace + ":" + petID.String(),
		"clinic_id":  clinicID.String(),
		"reason":     "no clinic role and no open referral",
	}
	scope := uuid.Nil
	if referral.ID != uuid.Nil {
		scope = clinicID
		detail["referral_id"] = referral.ID.String()
		detail["reason"] = "referral " + string(referral.Status(now))
	}
	return event(identity.ActionAccessDenied, reader, scope, uuid.Nil, now, detail)
}

func selectRecords(ctx context.Context, tx pgx.Tx, clinicID, petID uuid.UUID) ([]Record, error) {
	rows, err := tx.Query(ctx, `SELECT id, tenant_id, pet_id, kind, content, recorded_by, recorded_at
		FROM clinical_records WHERE tenant_id = $1 AND pet_id = $2
		ORDER BY recorded_at DESC, id DESC LIMIT $3`, clinicID, petID, MaxRecords)
	if err != nil {
		return nil, fmt.Errorf("select records: %w", err)
	}
	records, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) {
		var rec Record
		var kind string
		var content []byte
		if err := row.Scan(&rec.ID, &rec.ClinicID, &rec.PetID, &kind, &content, &rec.RecordedBy, &rec.RecordedAt); err != nil {
			return rec, err
		}
		rec.Kind = Kind(kind)
		return rec, rec.decode(content)
	})
	if err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	return records, nil
}

// decode sets the entry of rec's kind from its stored JSON.
func (rec *Record) decode(content []byte) error {
	var into any
	switch rec.Kind {
	case KindConsultation:
		rec.Consultation = &Consultation{}
		into = rec.Consultation
	case KindVitals:
		rec.Vitals = &Vitals{}
		into = rec.Vitals
	case KindTreatmentNote:
		rec.TreatmentNote = &TreatmentNote{}
		into = rec.TreatmentNote
	default:
		return fmt.Errorf("record %s has unknown kind %q", rec.ID, rec.Kind)
	}
	if err := json.Unmarshal(content, into); err != nil {
		return fmt.Errorf("decode record %s: %w", rec.ID, err)
	}
	return nil
}
