-- The transactional outbox and the consumer inbox, present in every service database.

CREATE TABLE outbox (
    id             uuid PRIMARY KEY,
    tenant         text        NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    trace          jsonb       NOT NULL DEFAULT '{}',
    payload        jsonb       NOT NULL,
    published_at   timestamptz
);

-- The relay's sweep reads only what is still unsent.
CREATE INDEX outbox_unsent ON outbox (occurred_at) WHERE published_at IS NULL;

CREATE TABLE inbox (
    event_id     uuid PRIMARY KEY,
    type         text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
