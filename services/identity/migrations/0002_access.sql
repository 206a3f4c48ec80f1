-- API tokens, the admin IP allowlist and the audit log of both, for one tenant.

CREATE TABLE api_tokens (
    id                text        PRIMARY KEY,          -- public part of otk_<id>_<secret>
    name              text        NOT NULL DEFAULT '',
    secret_hash       bytea       NOT NULL,             -- HMAC-SHA256 under token_hash_key
    scopes            text[]      NOT NULL,
    cidrs             text[]      NOT NULL DEFAULT '{}',
    expires_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        text        NOT NULL DEFAULT '',
    revoked_at        timestamptz,
    revoked_by        text,
    last_used_at      timestamptz,
    last_used_address text        NOT NULL DEFAULT ''
);

-- One row at most: the tenant's admin allowlist (no row, or an empty list: no restriction).
CREATE TABLE admin_allowlist (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    cidrs      text[]      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);

CREATE TABLE access_audit (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    address   text        NOT NULL DEFAULT '',
    old_value jsonb,
    new_value jsonb
);
