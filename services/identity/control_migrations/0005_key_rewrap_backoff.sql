-- A data key the KMS refused to re-wrap waits before it is tried again, behind the others,
-- so one tenant's unusable key never stalls the re-wrap of everyone else's.
ALTER TABLE tenant_data_keys ADD COLUMN rewrap_refused_at timestamptz;
CREATE INDEX tenant_data_keys_rewrap ON tenant_data_keys (rewrap_refused_at NULLS FIRST, wrapped_at);

-- A customer-managed key serves one live tenant: no two tenants share a key.
CREATE UNIQUE INDEX tenants_live_key_ref ON tenants (key_ref)
    WHERE key_ref IS NOT NULL AND status <> 'deleted';
