-- Envelope encryption's key store (identity/keystore.py). Every service's data keys of
-- every tenant, wrapped under the tenant's key-encryption key (KEK): kept here and never
-- in a tenant's own databases, so its backups hold no key and deleting the tenant
-- destroys them (crypto-shredding). tenants.key_ref (from 0001) names the customer's own
-- KMS key (BYO-KMS); NULL means the platform's key.

ALTER TABLE tenants ADD COLUMN key_changed_at timestamptz;
-- Data keys wrapped before this time are re-wrapped (a KEK rotation was asked for).
ALTER TABLE tenants ADD COLUMN key_rewrap_after timestamptz;

CREATE TABLE tenant_data_keys (
    tenant_id  uuid        NOT NULL REFERENCES tenants (id),
    service    text        NOT NULL,
    version    integer     NOT NULL CHECK (version > 0),
    kek        text        NOT NULL,   -- the KEK it is wrapped under now
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    wrapped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, service, version)
);
