-- Custom domains start unverified and are never routed until an operator (later: the DNS
-- check that comes with SSO) verifies them. Existing rows keep their current state.

ALTER TABLE tenant_domains ALTER COLUMN verified SET DEFAULT false;
ALTER TABLE tenant_domains ADD COLUMN verified_at timestamptz;
ALTER TABLE tenant_domains ADD COLUMN verified_by text NOT NULL DEFAULT '';
ALTER TABLE tenant_domains ADD COLUMN added_at timestamptz NOT NULL DEFAULT now();
