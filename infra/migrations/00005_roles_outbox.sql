-- +goose Up

-- Every clinic id, without any clinic data, so the relationship reconciler
-- can visit each clinic: the runtime role sees one tenant per transaction
-- and could not list clinics otherwise. A trigger on clinics fills it in the
-- transaction that creates the clinic, whichever code path creates it. The
-- trigger function is not SECURITY DEFINER: it inserts as the caller.
CREATE TABLE clinic_registry (
    clinic_id  uuid PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION register_clinic() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    INSERT INTO clinic_registry (clinic_id, created_at) VALUES (NEW.tenant_id, NEW.created_at);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER clinics_register AFTER INSERT ON clinics
    FOR EACH ROW EXECUTE FUNCTION register_clinic();

GRANT SELECT, INSERT ON clinic_registry TO vetvault_app;

-- Custom roles a clinic defines from the permissions it may grant; each
-- permission is a grants_<permission> relation on the clinic in Keto.
CREATE TABLE clinic_roles (
    tenant_id   uuid NOT NULL REFERENCES clinics (tenant_id),
    id          uuid NOT NULL,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 80),
    permissions text[] NOT NULL CHECK (
        cardinality(permissions) >= 1 AND permissions <@ ARRAY[
            'view_appointments', 'book_appointments', 'view_contacts', 'edit_contacts',
            'view_pets', 'create_pets', 'edit_pets', 'view_records', 'add_vitals',
            'write_records', 'view_invoices', 'create_invoices', 'edit_invoices',
            'view_reports', 'view_staff', 'view_audit']::text[]),
    created_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE UNIQUE INDEX clinic_roles_name ON clinic_roles (tenant_id, lower(name));

ALTER TABLE clinic_roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE clinic_roles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON clinic_roles
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON clinic_roles TO vetvault_app;

-- A membership row is now one role a person holds, and each row maps to one
-- Keto relationship: a built-in role for the whole clinic (branch_id NULL),
-- a built-in role at one branch, or a custom role (custom_role_id set, role
-- NULL). A person is a member while any of their rows is active. Until now
-- branch_id only recorded where an invitation pointed while the role held
-- the whole clinic, so existing rows keep that access: their branch_id is
-- cleared. The owner bypasses row-level security only inside this
-- migration, to rewrite existing rows and to register existing clinics.
ALTER TABLE memberships NO FORCE ROW LEVEL SECURITY;
ALTER TABLE clinics NO FORCE ROW LEVEL SECURITY;
UPDATE memberships SET branch_id = NULL WHERE branch_id IS NOT NULL;
INSERT INTO clinic_registry (clinic_id, created_at) SELECT tenant_id, created_at FROM clinics;
ALTER TABLE clinics FORCE ROW LEVEL SECURITY;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;

ALTER TABLE memberships
    DROP CONSTRAINT memberships_pkey,
    ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN custom_role_id uuid,
    ALTER COLUMN role DROP NOT NULL,
    ADD PRIMARY KEY (tenant_id, id),
    ADD CONSTRAINT memberships_custom_role FOREIGN KEY (tenant_id, custom_role_id) REFERENCES clinic_roles (tenant_id, id),
    ADD CONSTRAINT memberships_one_role CHECK ((role IS NULL) <> (custom_role_id IS NULL)),
    ADD CONSTRAINT memberships_branch_role CHECK (branch_id IS NULL OR (role IS NOT NULL AND role <> 'owner'));

CREATE UNIQUE INDEX memberships_grant ON memberships (tenant_id, identity_id, role, branch_id, custom_role_id) NULLS NOT DISTINCT;
CREATE INDEX memberships_custom_role ON memberships (tenant_id, custom_role_id) WHERE custom_role_id IS NOT NULL;

-- Relationship changes waiting for, or already applied to, Keto. A change
-- to memberships, branches or custom roles writes its rows here in the same
-- transaction; after the commit they are applied and marked applied, and a
-- row whose apply failed stays pending until the reconciler retries it. A
-- newer change to the same relationship marks an older pending row
-- superseded, so a retry cannot undo a later revocation. Applied rows are
-- pruned after a week; the audit trail keeps the history.
CREATE TABLE relationship_outbox (
    tenant_id         uuid NOT NULL REFERENCES clinics (tenant_id),
    id                bigint GENERATED ALWAYS AS IDENTITY,
    operation         text NOT NULL CHECK (operation IN ('write', 'delete')),
    namespace         text NOT NULL CHECK (char_length(namespace) BETWEEN 1 AND 64),
    object            text NOT NULL CHECK (char_length(object) BETWEEN 1 AND 64),
    relation          text NOT NULL CHECK (char_length(relation) BETWEEN 1 AND 64),
    subject_id        uuid,
    subject_namespace text CHECK (char_length(subject_namespace) <= 64),
    subject_object    text CHECK (char_length(subject_object) <= 64),
    subject_relation  text CHECK (char_length(subject_relation) <= 64),
    state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'applied', 'superseded')),
    attempts          integer NOT NULL DEFAULT 0,
    last_error        text NOT NULL DEFAULT '' CHECK (char_length(last_error) <= 1000),
    created_at        timestamptz NOT NULL DEFAULT now(),
    applied_at        timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK ((subject_id IS NULL) <> (subject_namespace IS NULL AND subject_object IS NULL AND subject_relation IS NULL))
);

CREATE INDEX relationship_outbox_pending ON relationship_outbox (tenant_id, id) WHERE state = 'pending';

ALTER TABLE relationship_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE relationship_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON relationship_outbox
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON relationship_outbox TO vetvault_app;

-- +goose Down
DROP TABLE relationship_outbox;
DROP INDEX memberships_custom_role;
DROP INDEX memberships_grant;
ALTER TABLE memberships NO FORCE ROW LEVEL SECURITY;
DELETE FROM memberships WHERE role IS NULL OR branch_id IS NOT NULL;
ALTER TABLE memberships FORCE ROW LEVEL SECURITY;
ALTER TABLE memberships
    DROP CONSTRAINT memberships_branch_role,
    DROP CONSTRAINT memberships_one_role,
    DROP CONSTRAINT memberships_custom_role,
    DROP CONSTRAINT memberships_pkey,
    DROP COLUMN custom_role_id,
    DROP COLUMN id,
    ALTER COLUMN role SET NOT NULL,
    ADD PRIMARY KEY (tenant_id, identity_id, role);
DROP TABLE clinic_roles;
DROP TRIGGER clinics_register ON clinics;
DROP FUNCTION register_clinic();
DROP TABLE clinic_registry;
