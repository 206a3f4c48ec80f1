-- The control database's audit log moves into the core audit trail (schema audit, core
-- migration 0002), in order; the heads of every tenant database's chain are anchored here.

-- Which (tenant, service) chain the anchor timer visited last: scheduling only, owned by
-- the control role like the registry (created before the role switch below).
CREATE TABLE audit_anchor_visits (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    service    text        NOT NULL,
    visited_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, service)
);

RESET ROLE;  -- the anchors belong to the audit role (append-only for the control role)

DO $$
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', current_setting('ontrack.deployment') || '_audit');
END
$$;

-- Chain heads of tenant databases, appended by identity's worker (core/audit/anchor.py):
-- a later chain shorter than, or different at, its last anchor was cut or rewritten.
CREATE TABLE audit.anchors (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    service     text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq > 0),
    hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
    anchored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX anchors_chain ON audit.anchors (tenant_id, service, seq DESC);
GRANT SELECT ON audit.anchors TO PUBLIC;
GRANT INSERT (tenant_id, service, seq, hash) ON audit.anchors TO PUBLIC;

RESET ROLE;  -- moving the old rows sets their original times (the admin may)

WITH old AS (
    SELECT a.*, gen_random_uuid() AS pid,
           a.actor !~ '^(system|operator|token:[0-9a-f]{24})$' AS personal
      FROM audit_log a
), people AS (
    INSERT INTO audit.personal (id, kind, value)
    SELECT pid, 'actor', actor FROM old WHERE personal
)
INSERT INTO audit.entries (at, actor, action, outcome, target, old_value, new_value)
SELECT at, CASE WHEN personal THEN 'pv:' || pid ELSE actor END, action, 'done',
       coalesce('tenant:' || tenant_id, ''), old_value::text, new_value::text
  FROM old ORDER BY id;

DROP TABLE audit_log;
