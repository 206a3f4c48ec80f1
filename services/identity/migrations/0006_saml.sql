-- SAML 2.0 single sign-on of one tenant (identity/sso/saml): the IdP configuration, our SP
-- key pair, the AuthnRequest ids we issued and the assertion ids we have consumed.

-- One row at most: the tenant's IdP. Certificates are base64 DER, every one trusted (two
-- during a rollover).
CREATE TABLE saml_config (
    singleton                boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    idp_entity_id            text        NOT NULL,
    sso_url                  text        NOT NULL,
    certificates             text[]      NOT NULL CHECK (cardinality(certificates) BETWEEN 1 AND 4),
    email_attribute          text        NOT NULL DEFAULT '',
    name_attribute           text        NOT NULL DEFAULT '',
    groups_attribute         text        NOT NULL DEFAULT '',
    allow_idp_initiated      boolean     NOT NULL DEFAULT false,
    requested_authn_context  text[]      NOT NULL DEFAULT '{}',
    authn_context_comparison text        NOT NULL DEFAULT 'exact'
        CHECK (authn_context_comparison IN ('exact', 'minimum', 'better', 'maximum')),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    updated_by               text        NOT NULL DEFAULT ''
);

-- Our SP key pair (one per tenant, made on first use): the certificate is in our metadata,
-- the private key decrypts encrypted assertions. private_key is sealed with the tenant's
-- data key (core/keys/envelope.py; identity's Contract.encrypted names it).
CREATE TABLE saml_sp_keys (
    id          uuid        PRIMARY KEY,
    singleton   boolean     NOT NULL DEFAULT true UNIQUE CHECK (singleton),
    certificate text        NOT NULL,
    private_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- AuthnRequests we sent, until answered (deleted: single use) or expired.
CREATE TABLE saml_requests (
    id         text        PRIMARY KEY,
    next       text        NOT NULL DEFAULT '/',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX saml_requests_expiry ON saml_requests (expires_at);

-- The replay cache: every assertion consumed, until it could no longer be valid. Shared by
-- every identity process, since it is in the tenant's database; a second insert of one id
-- is refused atomically by the primary key.
CREATE TABLE saml_assertions_seen (
    issuer       text        NOT NULL,
    assertion_id text        NOT NULL,
    seen_at      timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (issuer, assertion_id)
);
CREATE INDEX saml_assertions_seen_expiry ON saml_assertions_seen (expires_at);
