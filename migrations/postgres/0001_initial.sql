-- credshift account store, PostgreSQL flavour. Keep in step with ../sqlite/0001_initial.sql:
-- same tables, columns, constraints and triggers; only the dialect differs.
-- Times are Unix milliseconds (UTC) in BIGINT columns on both databases; flags are
-- 0/1 integers (sqlx's Any driver has no portable boolean).

CREATE TABLE accounts (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    realm       TEXT    NOT NULL CHECK (length(realm) BETWEEN 1 AND 63),
    login_id    TEXT    NOT NULL CHECK (length(login_id) BETWEEN 1 AND 128),
    base_email  TEXT    NOT NULL CHECK (length(base_email) BETWEEN 3 AND 254),
    state       TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended', 'closed')),
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (realm, login_id)
);

-- The login ID is common to every purpose and cannot be changed.
CREATE FUNCTION credshift_login_id_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.realm IS DISTINCT FROM OLD.realm OR NEW.login_id IS DISTINCT FROM OLD.login_id THEN
        RAISE EXCEPTION 'credshift: login_id is immutable';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER accounts_login_id_immutable
BEFORE UPDATE OF realm, login_id ON accounts
FOR EACH ROW EXECUTE FUNCTION credshift_login_id_immutable();

CREATE TABLE credentials (
    account_id   BIGINT  NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 63),
    hash         TEXT    NOT NULL,
    set_at       BIGINT  NOT NULL,
    set_via      TEXT    NOT NULL,
    must_change  SMALLINT NOT NULL DEFAULT 0 CHECK (must_change IN (0, 1)),
    version      BIGINT  NOT NULL DEFAULT 1,
    PRIMARY KEY (account_id, name)
);
CREATE INDEX credentials_by_name ON credentials (name, account_id);

-- Earlier hashes of a credential, for the policy's history rule.
CREATE TABLE credential_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        TEXT   NOT NULL,
    hash        TEXT   NOT NULL,
    retired_at  BIGINT NOT NULL
);
CREATE INDEX credential_history_by_credential ON credential_history (account_id, name, retired_at);

-- Temporary passwords: hashed, single-use, expiring.
CREATE TABLE recovery_tickets (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    credential  TEXT   NOT NULL,
    purpose     TEXT   NOT NULL,
    hash        TEXT   NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('live', 'used', 'revoked', 'expired')),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    closed_at   BIGINT
);
CREATE INDEX recovery_tickets_by_account ON recovery_tickets (account_id, credential, state);
CREATE INDEX recovery_tickets_by_expiry ON recovery_tickets (state, expires_at);

-- Transactional outbox. The payload is sealed (encrypted) and erased once sent.
CREATE TABLE mail_outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       BIGINT REFERENCES accounts (id) ON DELETE SET NULL,
    ticket_id        BIGINT REFERENCES recovery_tickets (id) ON DELETE SET NULL,
    realm            TEXT   NOT NULL,
    recipient        TEXT   NOT NULL,
    template         TEXT   NOT NULL,
    sealed_payload   BYTEA,
    state            TEXT   NOT NULL CHECK (state IN ('pending', 'sent', 'dead')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX mail_outbox_due ON mail_outbox (state, next_attempt_at);

-- Durable progress of a cutover; written in the same transaction as each batch.
CREATE TABLE cutover_checkpoints (
    cutover       TEXT   PRIMARY KEY,
    realm         TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    targets       TEXT   NOT NULL,
    at            BIGINT NOT NULL,
    phase         TEXT   NOT NULL CHECK (phase IN ('running', 'completed', 'retired')),
    cursor        BIGINT,
    done          BIGINT NOT NULL DEFAULT 0,
    total         BIGINT NOT NULL DEFAULT 0,
    started_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    retired_at    BIGINT
);

-- Who did what, when. Append-only; never holds a secret or a hash.
CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    realm       TEXT,
    login_id    TEXT,
    credential  TEXT,
    detail      TEXT
);
CREATE INDEX audit_log_by_account ON audit_log (realm, login_id, at);

CREATE FUNCTION credshift_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credshift: audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
FOR EACH ROW EXECUTE FUNCTION credshift_audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION credshift_audit_log_append_only();

-- Fixed-window counters shared by every API replica (recovery and verify throttling).
CREATE TABLE rate_limits (
    scope         TEXT   NOT NULL,
    key           TEXT   NOT NULL,
    window_start  BIGINT NOT NULL,
    hits          BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
