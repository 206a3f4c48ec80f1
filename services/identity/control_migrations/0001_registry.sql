-- The tenant registry (identity's control database).

CREATE TABLE tenants (
    id           uuid PRIMARY KEY,
    slug         text        NOT NULL,
    name         text        NOT NULL,
    tier         text        NOT NULL CHECK (tier IN ('business', 'enterprise')),
    status       text        NOT NULL CHECK (status IN
                     ('provisioning', 'active', 'suspended', 'deleting', 'deleted')),
    region       text        NOT NULL,
    placement    text        NOT NULL,
    key_ref      text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    delete_after timestamptz,
    deletion_started_at timestamptz,
    deleted_at   timestamptz
);

-- A slug names one live tenant; deleted records stay for the audit trail.
CREATE UNIQUE INDEX tenants_live_slug ON tenants (slug) WHERE status <> 'deleted';
CREATE INDEX tenants_due_deletion ON tenants (delete_after)
    WHERE status = 'deleting' AND deletion_started_at IS NULL;

CREATE TABLE tenant_domains (
    domain    text PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    verified  boolean NOT NULL DEFAULT true
);
CREATE INDEX tenant_domains_tenant ON tenant_domains (tenant_id);

-- Progress of each service through the provisioning and deletion saga.
CREATE TABLE tenant_services (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    service    text        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('pending', 'ready', 'failed', 'dropped')),
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text        NOT NULL DEFAULT '',
    schema_version integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, service)
);

-- Control-plane audit trail: who did what to which tenant, old and new values.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    tenant_id  uuid,
    actor      text        NOT NULL,
    action     text        NOT NULL,
    old_value  jsonb,
    new_value  jsonb
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at);
