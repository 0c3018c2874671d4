-- +goose Up

-- Platform events about identities that belong to no clinic: logins, failed
-- logins, factor and password changes, session revocations. The runtime role
-- may only append; reports read them through the migration owner.
CREATE TABLE security_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action          text NOT NULL CHECK (char_length(action) BETWEEN 1 AND 64),
    actor_id        uuid,
    target_id       uuid,
    identifier_hash text CHECK (identifier_hash ~ '^[0-9a-f]{64}$'),
    ip              text NOT NULL DEFAULT '' CHECK (char_length(ip) <= 64),
    user_agent      text NOT NULL DEFAULT '' CHECK (char_length(user_agent) <= 512),
    detail          jsonb NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL
);

CREATE INDEX security_events_actor ON security_events (actor_id, occurred_at);
CREATE INDEX security_events_target ON security_events (target_id, occurred_at);
CREATE INDEX security_events_identifier ON security_events (identifier_hash, occurred_at);

GRANT INSERT ON security_events TO vetvault_app;

-- Clinic-scoped events: invitations, role changes, removals. Readable by the
-- clinic's tenant; the runtime role may append but never change or delete.
CREATE TABLE audit_events (
    tenant_id   uuid NOT NULL REFERENCES clinics (tenant_id),
    id          uuid NOT NULL,
    action      text NOT NULL CHECK (char_length(action) BETWEEN 1 AND 64),
    actor_id    uuid,
    target_id   uuid,
    ip          text NOT NULL DEFAULT '' CHECK (char_length(ip) <= 64),
    user_agent  text NOT NULL DEFAULT '' CHECK (char_length(user_agent) <= 512),
    detail      jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX audit_events_time ON audit_events (tenant_id, occurred_at);

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = (SELECT app_tenant_id()))
    WITH CHECK (tenant_id = (SELECT app_tenant_id()));

GRANT SELECT, INSERT ON audit_events TO vetvault_app;

-- +goose Down
DROP TABLE audit_events;
DROP TABLE security_events;
