-- Data subjects known to this tenant (from identity's user events): the DSAR base.

CREATE TABLE data_subjects (
    user_id       uuid PRIMARY KEY,
    email         text        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);
