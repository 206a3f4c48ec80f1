-- SSO sign-ins in progress. Pending logins (an OIDC login started, a SAML AuthnRequest
-- issued) are counted per client address (an IPv6 /64: signin/throttle_rules.address_key),
-- so that one client's flood of the public login endpoints is refused to that client alone;
-- the tenant-wide cap evicts the oldest instead of refusing everyone (identity/sso/pending.py).
ALTER TABLE oidc_logins ADD COLUMN client_key text NOT NULL DEFAULT '';
CREATE INDEX oidc_logins_by_client ON oidc_logins (client_key, expires_at);
CREATE INDEX oidc_logins_by_created ON oidc_logins (created_at);

ALTER TABLE saml_requests ADD COLUMN client_key text NOT NULL DEFAULT '';
CREATE INDEX saml_requests_by_client ON saml_requests (client_key, expires_at);
CREATE INDEX saml_requests_by_created ON saml_requests (created_at);

-- The browser that started a SAML sign-in: the keyed hash of the binding cookie set with
-- the AuthnRequest (sso/saml/store.py); a response answering it from another browser is
-- refused (login CSRF).
ALTER TABLE saml_requests ADD COLUMN binding_hash bytea;
