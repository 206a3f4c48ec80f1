-- Tenant roles, signed-in sessions, the sign-in policy and the SSO accounts of one tenant.

CREATE TABLE user_roles (
    user_id    uuid        NOT NULL REFERENCES users (id),
    role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'auditor')),
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by text        NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, role)
);

-- A session cookie reads ots_<id>_<secret>; only the keyed hash of the secret is stored.
CREATE TABLE sessions (
    id              text        PRIMARY KEY,
    secret_hash     bytea       NOT NULL,               -- HMAC-SHA256 under token_hash_key
    user_id         uuid        NOT NULL REFERENCES users (id),
    method          text        NOT NULL,               -- password | saml | oidc:<p> | invitation
    mfa_source      text        NOT NULL DEFAULT 'none' CHECK (mfa_source IN ('idp', 'local', 'none')),
    factor          text        NOT NULL DEFAULT '',
    idp             text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    idle_expires_at timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text        NOT NULL DEFAULT '',
    client_address  text        NOT NULL DEFAULT '',
    user_agent      text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_by_created ON sessions (created_at DESC, id);

-- One row: the tenant's sign-in policy (identity/signin/policy.py holds the defaults' reasons).
CREATE TABLE signin_policy (
    singleton                boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    idle_timeout_seconds     integer     NOT NULL DEFAULT 28800,
    absolute_timeout_seconds integer     NOT NULL DEFAULT 86400,
    sso_required             boolean     NOT NULL DEFAULT false,
    break_glass_users        uuid[]      NOT NULL DEFAULT '{}',
    jit_provisioning         boolean     NOT NULL DEFAULT false,
    lockout_threshold        integer     NOT NULL DEFAULT 10,
    lockout_seconds          integer     NOT NULL DEFAULT 900,
    updated_at               timestamptz NOT NULL DEFAULT now(),
    updated_by               text        NOT NULL DEFAULT ''
);
INSERT INTO signin_policy (singleton) VALUES (true);

-- Who an IdP says a user is: accounts are found by (issuer, subject), never by email.
CREATE TABLE external_accounts (
    issuer          text        NOT NULL,
    subject         text        NOT NULL,
    user_id         uuid        NOT NULL REFERENCES users (id),
    method          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at timestamptz,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX external_accounts_user ON external_accounts (user_id);
