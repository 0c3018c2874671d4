-- +goose Up

-- A membership now records the member's normalised email (so a clinic can
-- list its staff without asking Kratos per member), the branch they were
-- invited to, and whether the clinic has deactivated them. A deactivated
-- membership keeps its row for the audit trail but grants nothing: its Keto
-- relationship is removed.
ALTER TABLE memberships
    ADD COLUMN email text NOT NULL DEFAULT '' CHECK (char_length(email) <= 320),
    ADD COLUMN branch_id uuid,
    ADD COLUMN active boolean NOT NULL DEFAULT true,
    ADD CONSTRAINT memberships_branch FOREIGN KEY (tenant_id, branch_id) REFERENCES branches (tenant_id, id);

CREATE TABLE invitations (
    tenant_id   uuid NOT NULL REFERENCES clinics (tenant_id),
    id          uuid NOT NULL,
    identity_id uuid NOT NULL,
    email       text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    role        text NOT NULL CHECK (role IN ('owner', 'manager', 'veterinarian', 'nurse', 'receptionist')),
    branch_id   uuid,
    invited_by  uuid NOT NULL,
    new_account boolean NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, branch_id) REFERENCES branches (tenant_id, id)
);

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invitations
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

GRANT SELECT, INSERT, UPDATE, DELETE ON invitations TO vetvault_app;

-- +goose Down
DROP TABLE invitations;
ALTER TABLE memberships DROP CONSTRAINT memberships_branch, DROP COLUMN active, DROP COLUMN branch_id, DROP COLUMN email;
