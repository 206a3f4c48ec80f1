-- Users of one tenant.

CREATE TABLE users (
    id           uuid PRIMARY KEY,
    email        text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    active       boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Emails keep the case they were given in, but are unique without regard to it.
CREATE UNIQUE INDEX users_email ON users (lower(email));
