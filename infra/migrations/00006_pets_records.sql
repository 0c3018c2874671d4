-- +goose Up

-- Pet parents are a clinic's clients. Their contact details are personal
-- data: the API shows them only to roles with view_contacts.
CREATE TABLE pet_parents (
    tenant_id  uuid NOT NULL REFERENCES clinics (tenant_id),
    id         uuid NOT NULL,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 120),
    phone      text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    email      text CHECK (char_length(email) BETWEEN 3 AND 320),
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX pet_parents_phone ON pet_parents (tenant_id, phone);

-- Pets are the patients. Each has one Keto relationship
-- Pet:<id>#clinic@Clinic:<tenant_id>, queued in relationship_outbox by the
-- transaction that inserts the row and written to Keto after it commits.
CREATE TABLE pets (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    pet_parent_id uuid NOT NULL,
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 80),
    species       text NOT NULL CHECK (char_length(species) BETWEEN 1 AND 40),
    breed         text NOT NULL DEFAULT '' CHECK (char_length(breed) <= 80),
    sex           text NOT NULL CHECK (sex IN ('male', 'female', 'unknown')),
    date_of_birth date,
    created_by    uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, pet_parent_id) REFERENCES pet_parents (tenant_id, id)
);

CREATE INDEX pets_by_name ON pets (tenant_id, name, id);
CREATE INDEX pets_by_parent ON pets (tenant_id, pet_parent_id);

-- Clinical records are append-only for the runtime role: it may insert and
-- read entries but never change or delete one, so a correction flow, when
-- one is added, has to append an entry that refers to the corrected one.
-- content holds the entry of its kind as JSON, validated by the application.
CREATE TABLE clinical_records (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    pet_id      uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('consultation', 'vitals', 'treatment_note')),
    content     jsonb NOT NULL CHECK (jsonb_typeof(content) = 'object' AND octet_length(content::text) <= 262144),
    recorded_by uuid NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, pet_id) REFERENCES pets (tenant_id, id)
);

CREATE INDEX clinical_records_by_pet ON clinical_records (tenant_id, pet_id, recorded_at, id);

-- A referral shares one pet's clinical records with a staff member of
-- another clinic (vet_id) until expires_at. While it is open (ended_at is
-- NULL) Keto holds Pet:<pet_id>#referred_vets@<vet_id>; revoking or expiring
-- it deletes that relationship and sets ended_at. At most one referral per
-- pet and vet is open, because they would share one Keto relationship.
CREATE TABLE referrals (
    tenant_id  uuid NOT NULL,
    id         uuid NOT NULL,
    pet_id     uuid NOT NULL,
    vet_id     uuid NOT NULL,
    vet_email  text NOT NULL CHECK (char_length(vet_email) BETWEEN 3 AND 320),
    granted_by uuid NOT NULL,
    granted_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz,
    end_reason text CHECK (end_reason IN ('revoked', 'expired')),
    ended_by   uuid,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, pet_id) REFERENCES pets (tenant_id, id),
    CHECK (expires_at > granted_at),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);

CREATE UNIQUE INDEX referrals_one_open ON referrals (tenant_id, pet_id, vet_id) WHERE ended_at IS NULL;
CREATE INDEX referrals_by_pet ON referrals (tenant_id, pet_id, granted_at);

ALTER TABLE pet_parents ENABLE ROW LEVEL SECURITY;
ALTER TABLE pet_parents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pet_parents
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

ALTER TABLE pets ENABLE ROW LEVEL SECURITY;
ALTER TABLE pets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pets
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

ALTER TABLE clinical_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE clinical_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON clinical_records
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

ALTER TABLE referrals ENABLE ROW LEVEL SECURITY;
ALTER TABLE referrals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON referrals
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

-- The sweeper's index of open referrals across clinics. The runtime role
-- sees one clinic per transaction, so it could not find referrals due to
-- expire without knowing their clinics; this platform table names them. It
-- holds ids and times only, no clinic data, so it has no tenant_id and no
-- row-level security. A row lives exactly as long as its referral is open.
CREATE TABLE referral_expiries (
    referral_id uuid PRIMARY KEY,
    clinic_id   uuid NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX referral_expiries_due ON referral_expiries (expires_at);

GRANT SELECT, INSERT, UPDATE ON pet_parents, pets TO vetvault_app;
GRANT SELECT, INSERT ON clinical_records TO vetvault_app;
GRANT SELECT, INSERT ON referrals TO vetvault_app;
GRANT UPDATE (ended_at, end_reason, ended_by) ON referrals TO vetvault_app;
GRANT SELECT, INSERT, DELETE ON referral_expiries TO vetvault_app;

-- +goose Down
DROP TABLE referral_expiries;
DROP TABLE referrals;
DROP TABLE clinical_records;
DROP TABLE pets;
DROP TABLE pet_parents;
