-- Domains verified by a DNS TXT challenge the tenant publishes (issue 12).
--
-- A pending domain is a claim of one tenant: several tenants may claim the same name at once
-- (no one can squat on a domain by adding it first), and only one may have it verified,
-- which the partial unique index makes true even for two verifications racing each other.
ALTER TABLE tenant_domains DROP CONSTRAINT tenant_domains_pkey;
ALTER TABLE tenant_domains ADD PRIMARY KEY (tenant_id, domain);
CREATE UNIQUE INDEX tenant_domains_verified ON tenant_domains (domain) WHERE verified;

-- The challenge: 64 hex digits from the server's strong random source (gen_random_uuid uses
-- pg_strong_random), never derived from anything guessable. Each claim has its own, so one
-- tenant's published record never verifies another tenant's claim.
ALTER TABLE tenant_domains ADD COLUMN challenge_token text NOT NULL
    DEFAULT encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text,
                                     'UTF8')), 'hex');
ALTER TABLE tenant_domains ADD COLUMN added_by text NOT NULL DEFAULT '';
ALTER TABLE tenant_domains ADD COLUMN last_checked_at timestamptz;
ALTER TABLE tenant_domains ADD COLUMN last_check_result text NOT NULL DEFAULT '';
