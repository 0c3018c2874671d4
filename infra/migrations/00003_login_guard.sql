-- +goose Up

-- Counters of the Kratos proxy's brute-force limits, shared by every server
-- instance. Each row counts the attempts made under one key (a login
-- identifier, a client IP, a flow or a session) during one fixed window
-- starting at window_start; the limiter weighs the previous window in to get
-- a sliding estimate. key_hash is the SHA-256 of the key and its kind, so no
-- email address or IP address is stored here. The rows hold no clinic data,
-- so the table has no tenant_id and no row-level security.
CREATE TABLE login_attempts (
    key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),
    window_start timestamptz NOT NULL,
    attempts     integer NOT NULL CHECK (attempts >= 0),
    PRIMARY KEY (key_hash, window_start)
);

CREATE INDEX login_attempts_window ON login_attempts (window_start);

-- TOTP codes that completed a sign-in. Kratos v1.3.1 accepts a code during
-- three 30-second steps and does not remember which codes it accepted, so
-- the proxy records each one here and rejects a second use while the row is
-- younger than the code's validity. code_hash is the SHA-256 of the code.
CREATE TABLE used_totp_codes (
    identity_id uuid NOT NULL,
    code_hash   bytea NOT NULL CHECK (length(code_hash) = 32),
    used_at     timestamptz NOT NULL,
    PRIMARY KEY (identity_id, code_hash)
);

CREATE INDEX used_totp_codes_used_at ON used_totp_codes (used_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON login_attempts, used_totp_codes TO vetvault_app;

-- +goose Down
DROP TABLE used_totp_codes;
DROP TABLE login_attempts;
