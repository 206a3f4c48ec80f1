-- Assets and the owners they reference (owners mirror identity's user events).

CREATE TABLE owners (
    user_id    uuid PRIMARY KEY,
    email      text        NOT NULL,
    active     boolean     NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE assets (
    id            uuid PRIMARY KEY,
    name          text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('hardware', 'software', 'saas', 'cloud')),
    -- No foreign key: an asset may name an owner whose user event has not arrived yet.
    owner_user_id uuid,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX assets_owner ON assets (owner_user_id);
