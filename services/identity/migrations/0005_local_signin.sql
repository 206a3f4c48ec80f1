-- Local sign-in of one tenant: password hashes, invitations, failure counters, mail outbox.

-- One argon2id hash per user that has set a password (PHC string; never the password).
CREATE TABLE password_credentials (
    user_id    uuid        PRIMARY KEY REFERENCES users (id),
    hash       text        NOT NULL CHECK (hash LIKE '$argon2id$%'),
    set_at     timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- An invitation link's token is never stored: only the keyed hash of its secret.
CREATE TABLE invitations (
    id          uuid        PRIMARY KEY,
    email       text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'auditor')),
    user_id     uuid        NOT NULL REFERENCES users (id),
    secret_hash bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    revoked_by  text
);
-- At most one open invitation per email (re-inviting revokes the old one first).
CREATE UNIQUE INDEX invitations_open_email ON invitations (lower(email))
    WHERE used_at IS NULL AND revoked_at IS NULL;
CREATE INDEX invitations_by_created ON invitations (created_at DESC, id);

-- Failed password sign-ins: per account, and per client address (an IPv6 /64).
CREATE TABLE signin_account_failures (
    user_id           uuid        PRIMARY KEY REFERENCES users (id),
    failures          integer     NOT NULL DEFAULT 0,
    window_started_at timestamptz,
    locked_until      timestamptz
);
CREATE TABLE signin_address_failures (
    address           text        PRIMARY KEY,
    failures          integer     NOT NULL DEFAULT 0,
    window_started_at timestamptz,
    locked_until      timestamptz
);

-- Mail written in the transaction of the change it announces; identity's worker sends it.
-- The body holds the invitation link, so it is encrypted with the tenant's data key
-- (core/keys/envelope.py) and erased once the message is sent or dead.
CREATE TABLE mail_outbox (
    id              uuid        PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    body            bytea,
    invitation_id   uuid        REFERENCES invitations (id),
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'sent', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    sent_at         timestamptz
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX mail_outbox_invitation ON mail_outbox (invitation_id);
