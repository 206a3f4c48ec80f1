-- Facts about assets (from inventory's events) that evidence metrics are computed from.

CREATE TABLE asset_facts (
    asset_id    uuid PRIMARY KEY,
    kind        text        NOT NULL,
    has_owner   boolean     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
