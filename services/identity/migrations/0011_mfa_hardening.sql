-- MFA hardening after the attack review (docs/mfa.md "Attacks considered").

-- A pending TOTP set-up belongs to the session that began it: only that session is shown
-- its secret again and may confirm it (another session of the user gets a new secret).
ALTER TABLE mfa_totp ADD COLUMN pending_session text;

-- Wrong second factors per user, across every session (the per-session limit ends one
-- session; this one locks the user's step-up for the sign-in policy's lockout figures).
-- Cleared by a completed step-up or an admin's unlock, never by a correct password.
CREATE TABLE mfa_user_failures (
    user_id           uuid        PRIMARY KEY REFERENCES users (id),
    failures          integer     NOT NULL DEFAULT 0,
    window_started_at timestamptz,
    locked_until      timestamptz
);

-- An admin's reset gives the user a grace of their own to enrol again, so a user reset
-- past the tenant's grace can still sign in (at the enrol stage) instead of being locked out.
ALTER TABLE users ADD COLUMN mfa_enrol_by timestamptz;
