-- Multi-factor authentication (identity/mfa): the tenant's MFA policy, the stage a session
-- is at, and the factors (TOTP, recovery codes, passkeys) with single-use WebAuthn
-- challenges.

-- The policy (mfa/policy.py): off | admins | everyone; users it covers who have no factor
-- may enrol until the grace period ends (set when the policy starts to cover more people,
-- and counted from a user's creation for later users); which IdP evidence counts as MFA
-- (per IdP kind; a kind absent: the defaults); passkey user verification.
ALTER TABLE signin_policy
    ADD COLUMN mfa_policy text NOT NULL DEFAULT 'off'
        CHECK (mfa_policy IN ('off', 'admins', 'everyone')),
    ADD COLUMN mfa_grace_days integer NOT NULL DEFAULT 14 CHECK (mfa_grace_days BETWEEN 0 AND 90),
    ADD COLUMN mfa_grace_until timestamptz,
    ADD COLUMN mfa_evidence jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN passkey_user_verification text NOT NULL DEFAULT 'required'
        CHECK (passkey_user_verification IN ('required', 'preferred'));

-- A session opens at ``full`` or, when the policy needs a factor the sign-in did not prove,
-- at ``step_up`` (a factor of ours, nothing else) or ``enrol`` (enrolment only). A step-up
-- replaces the session (a new id): the stage of a row never changes but to end it.
ALTER TABLE sessions
    ADD COLUMN stage text NOT NULL DEFAULT 'full' CHECK (stage IN ('full', 'step_up', 'enrol')),
    ADD COLUMN mfa_failures integer NOT NULL DEFAULT 0;
CREATE INDEX sessions_by_mfa_source ON sessions (created_at, mfa_source);

-- TOTP: one secret per user, sealed with the tenant's key (mfa/store.py TOTP_SECRET); it
-- counts as a factor once confirmed by a first code. last_step: the last time step accepted
-- (a code is accepted once: mfa/totp.matching_step).
CREATE TABLE mfa_totp (
    user_id      uuid        PRIMARY KEY REFERENCES users (id),
    secret       bytea       NOT NULL,
    confirmed_at timestamptz,
    last_step    bigint,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Recovery codes: keyed hashes only (mfa/recovery.py), single use.
CREATE TABLE mfa_recovery_codes (
    user_id    uuid        NOT NULL REFERENCES users (id),
    code_hash  bytea       NOT NULL,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, code_hash)
);

-- Passkeys (WebAuthn credentials): several per user, named; flagged (and refused) when the
-- signature counter goes backwards (a cloned authenticator).
CREATE TABLE mfa_passkeys (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id),
    credential_id bytea       NOT NULL UNIQUE,
    public_key    bytea       NOT NULL,
    sign_count    bigint      NOT NULL DEFAULT 0,
    name          text        NOT NULL,
    aaguid        text        NOT NULL DEFAULT '',
    transports    text[]      NOT NULL DEFAULT '{}',
    backed_up     boolean     NOT NULL DEFAULT false,
    flagged_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX mfa_passkeys_by_user ON mfa_passkeys (user_id);
-- The WebAuthn user handle of a user (random, not the user id: WebAuthn L2 section 14.6.1).
CREATE TABLE mfa_user_handles (
    user_id uuid  PRIMARY KEY REFERENCES users (id),
    handle  bytea NOT NULL UNIQUE
);

-- WebAuthn challenges, single use: bound to the session that asked (registration, step-up)
-- or, for a passwordless sign-in, to the browser (the keyed hash of a cookie set with the
-- options).
CREATE TABLE mfa_challenges (
    id           uuid        PRIMARY KEY,
    purpose      text        NOT NULL CHECK (purpose IN ('register', 'step_up', 'sign_in')),
    challenge    bytea       NOT NULL,
    session_id   text,
    binding_hash bytea,
    user_id      uuid,
    client_key   text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges (expires_at);
CREATE INDEX mfa_challenges_by_client ON mfa_challenges (client_key, expires_at);
