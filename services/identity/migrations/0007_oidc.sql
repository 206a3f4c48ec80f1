-- OIDC sign-in (identity/sso/oidc): the tenant's provider configurations and its pending
-- logins.

-- One row per configured provider. The client secret is sealed with the tenant's data key
-- (core/keys/envelope.py: AES-256-GCM, bound to tenant, table, column and the provider
-- name), never stored in plaintext; a data key rotation re-encrypts it (identity's
-- Contract.encrypted).
CREATE TABLE oidc_providers (
    provider       text        PRIMARY KEY CHECK (provider IN ('google', 'entra', 'oidc')),
    issuer         text        NOT NULL,
    client_id      text        NOT NULL,
    client_secret  bytea,
    scopes         text[]      NOT NULL,
    hosted_domains text[]      NOT NULL DEFAULT '{}',   -- google: Workspace domains (hd)
    entra_tenant   text        NOT NULL DEFAULT '',     -- entra: the directory id (tid)
    enabled        boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     text        NOT NULL DEFAULT ''
);

-- A login begun and not yet finished: single use (taken with DELETE … RETURNING), short
-- lived. Found by a keyed hash of its state; bound to the browser that began it by a keyed
-- hash of the cookie set then. The nonce and PKCE verifier never leave identity except
-- to the provider.
CREATE TABLE oidc_logins (
    state_hash    bytea       PRIMARY KEY,
    provider      text        NOT NULL,
    binding_hash  bytea       NOT NULL,
    nonce         text        NOT NULL,
    code_verifier text        NOT NULL,
    redirect_uri  text        NOT NULL,
    next          text        NOT NULL DEFAULT '/',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX oidc_logins_expiry ON oidc_logins (expires_at);
