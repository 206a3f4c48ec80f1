-- Named external collaborators (issue 12): people whose address is in none of the tenant's
-- verified domains but who may sign in by SSO until `expires_at`. The expiry is checked at
-- sign-in against the time of the sign-in (sso/admission.py), never by a sweep, so an
-- exception stops working the moment it ends. Removing one deletes its row; the audit trail
-- keeps what it was (the address as a personal value).
CREATE TABLE collaborators (
    id         uuid PRIMARY KEY,
    address    text        NOT NULL,
    reason     text        NOT NULL,
    approver   text        NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One exception per address, compared without regard to case (as users' emails are).
CREATE UNIQUE INDEX collaborators_address ON collaborators (lower(address));
