-- +goose Up

-- The tenant of the current transaction, set by tenants.DB with
-- set_config('app.tenant_id', …, true). Outside such a transaction the
-- setting reads as '' (or is missing), which NULLIF turns into NULL, so every
-- policy comparison fails and no row is visible or writable.
CREATE FUNCTION app_tenant_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE clinics (
    tenant_id  uuid PRIMARY KEY,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 120),
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE branches (
    tenant_id  uuid NOT NULL REFERENCES clinics (tenant_id),
    id         uuid NOT NULL,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 120),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- Memberships mirror the relationships written to Keto: Keto decides, and
-- this table lets the clinic list and audit who holds which role.
CREATE TABLE memberships (
    tenant_id   uuid NOT NULL REFERENCES clinics (tenant_id),
    identity_id uuid NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'manager', 'veterinarian', 'nurse', 'receptionist')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, identity_id, role)
);

CREATE TABLE appointments (
    tenant_id        uuid NOT NULL,
    id               uuid NOT NULL,
    branch_id        uuid NOT NULL,
    pet_name         text NOT NULL CHECK (char_length(pet_name) BETWEEN 1 AND 80),
    species          text NOT NULL CHECK (char_length(species) BETWEEN 1 AND 40),
    pet_parent_name  text NOT NULL CHECK (char_length(pet_parent_name) BETWEEN 1 AND 120),
    pet_parent_phone text NOT NULL CHECK (pet_parent_phone ~ '^\+[1-9][0-9]{7,14}$'),
    starts_at        timestamptz NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    reason           text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    status           text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'checked_in', 'completed', 'no_show', 'cancelled')),
    created_by       uuid NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, branch_id) REFERENCES branches (tenant_id, id)
);

CREATE INDEX appointments_schedule ON appointments (tenant_id, starts_at);

-- One policy per clinic table, comparing tenant_id with the transaction's
-- tenant. The sub-select makes PostgreSQL evaluate the setting once per
-- statement instead of once per row.
ALTER TABLE clinics ENABLE ROW LEVEL SECURITY;
ALTER TABLE clinics FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON clinics
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

ALTER TABLE branches ENABLE ROW LEVEL SECURITY;
ALTER TABLE branches FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON branches
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

ALTER TABLE memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON memberships
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

ALTER TABLE appointments ENABLE ROW LEVEL SECURITY;
ALTER TABLE appointments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON appointments
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON clinics, branches, memberships, appointments TO vetvault_app;
GRANT EXECUTE ON FUNCTION app_tenant_id() TO vetvault_app;

-- +goose Down
DROP TABLE appointments;
DROP TABLE memberships;
DROP TABLE branches;
DROP TABLE clinics;
DROP FUNCTION app_tenant_id();
