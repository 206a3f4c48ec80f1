"""Identity's OIDC client against a real provider (devtools/oidcprovider.py: authlib's
authorization server on loopback): discovery, the code flow with PKCE, signatures checked
against the provider's JWKS (one refetch for an unknown key, then refused), and the claim
rules applied to what a misbehaving provider signs. No stack: only the provider's sockets.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ontrackio.devtools.oidcprovider import Misbehaviour, OidcProvider, Person
from ontrackio.identity.errors import IdpUnavailable, OidcRefused
from ontrackio.identity.signin.external import ExternalIdentity
from ontrackio.identity.sso.oidc import client as oidc_client
from ontrackio.identity.sso.oidc import rules

REDIRECT = "http://acme.localhost:8080/auth/oidc/{}/callback"
TID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
OTHER_TID = "9b7c1d2e-0000-4000-8000-00000000abcd"


@pytest.fixture(scope="module")
def provider():
    with OidcProvider() as p:
        yield p


def new_client(**options) -> oidc_client.ProviderClient:
    return oidc_client.ProviderClient(
        timeout=5,
        cache_seconds=options.pop("cache_seconds", 300),
        min_refetch_seconds=options.pop("min_refetch_seconds", 0),
        allow_loopback_http=options.pop("allow_loopback_http", True),
        **options,
    )


def person(shape: str, **changes) -> Person:
    n = uuid.uuid4().hex[:8]
    claims: dict = {}
    if shape == "google":
        claims = {"hd": "acme.example"}
    if shape == "entra":
        claims = {
            "tid": TID,
            "oid": str(uuid.uuid4()),
            "preferred_username": f"p{n}@acme.example",
            "xms_edov": True,
        }
    claims.update(changes.pop("claims", {}))
    return Person(
        sub=changes.pop("sub", f"sub-{n}"),
        email=changes.pop("email", f"p{n}@acme.example"),
        name="Pat Example",
        email_verified=changes.pop("email_verified", None if shape == "entra" else True),
        claims=claims,
    )


class Login:
    """One tenant's client at the provider and the flow identity runs for it."""

    def __init__(self, provider: OidcProvider, shape: str, client=None, **config):
        self.provider, self.shape = provider, shape
        kind = {"generic": "oidc", "google": "google", "entra": "entra"}[shape]
        self.redirect = REDIRECT.format(kind)
        self.client_id, self.secret = provider.register(shape, self.redirect)
        defaults = {
            "oidc": {},
            "google": {"hosted_domains": ["acme.example"]},
            "entra": {"entra_tenant": TID},
        }[kind]
        self.config = rules.validate_config(
            kind,
            issuer=config.pop("issuer", provider.issuer(shape)),
            client_id=self.client_id,
            allow_loopback_http=True,
            **{**defaults, **config},
        )
        self.client = client or new_client()

    def authorize(self, who: Person | None) -> tuple[dict, str, str, str]:
        """(callback query, state, nonce, verifier) of one authorization at the provider."""
        self.provider.sign_in_as(self.client_id, who)
        self.discovery = self.client.discover(self.config)
        state, nonce, verifier = rules.new_state(), rules.new_nonce(), rules.new_code_verifier()
        url = self.client.authorization_url(
            self.config,
            self.discovery,
            redirect_uri=self.redirect,
            state=state,
            nonce=nonce,
            code_verifier=verifier,
        )
        r = requests.get(url, allow_redirects=False, timeout=5)
        assert r.status_code == 302, r.text
        location = r.headers["location"]
        assert location.startswith(self.redirect + "?")
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert query["state"] == state
        return query, state, nonce, verifier

    def id_token(self, query: dict, verifier: str) -> str:
        return self.client.exchange_code(
            self.config,
            self.discovery,
            client_secret=self.secret,
            code=query["code"],
            code_verifier=verifier,
            redirect_uri=self.redirect,
        )

    def run(self, who: Person) -> ExternalIdentity:
        query, _, nonce, verifier = self.authorize(who)
        claims = self.client.verify(self.discovery, self.id_token(query, verifier))
        expected = rules.Expected(
            provider=self.config.provider,
            issuer=self.discovery.issuer,
            client_id=self.config.client_id,
            nonce=nonce,
            hosted_domains=self.config.hosted_domains,
            entra_tenant=self.config.entra_tenant,
        )
        return rules.check_claims(claims, expected, now=time.time())

    def refused(self, who: Person, **knobs) -> str:
        self.provider.misbehave(self.client_id, Misbehaviour(**knobs))
        try:
            with pytest.raises(OidcRefused) as info:
                self.run(who)
        finally:
            self.provider.behave(self.client_id)
        return info.value.why


# -- each shape signs in -------------------------------------------------------------------


def test_a_generic_provider_signs_a_person_in(provider):
    who = person("generic", claims={"amr": ["pwd", "otp"], "acr": "loa2"})
    ext = Login(provider, "generic").run(who)
    assert (ext.issuer, ext.subject, ext.email) == (provider.issuer("generic"), who.sub, who.email)
    assert ext.method == "oidc:oidc" and ext.email_verified
    assert ext.mfa_evidence == ("pwd", "otp", "loa2")


def test_a_google_workspace_account_signs_in(provider):
    who = person("google")
    ext = Login(provider, "google").run(who)
    assert ext.method == "oidc:google" and ext.attributes == {"hd": "acme.example"}


def test_an_entra_account_signs_in_through_the_multi_tenant_endpoint(provider):
    who = person("entra")
    login = Login(provider, "entra")
    ext = login.run(who)
    assert "{tenantid}" in login.discovery.issuer  # the multi-tenant document
    assert ext.issuer == f"{provider.base_url}/{TID}/v2.0"
    assert ext.subject == f"{TID}:{who.claims['oid']}"  # never Entra's pairwise sub
    assert ext.email_verified  # xms_edov


def test_an_entra_directorys_own_endpoint_works_too(provider):
    login = Login(provider, "entra", issuer=provider.issuer("entra", TID))
    assert login.run(person("entra")).subject.startswith(TID + ":")
    assert login.discovery.issuer == f"{provider.base_url}/{TID}/v2.0"


# -- what a misbehaving provider signs is refused ------------------------------------------


@pytest.mark.parametrize(
    "shape, knobs, why",
    [
        ("generic", dict(alg="none"), rules.WHY_ALGORITHM),
        ("generic", dict(alg="HS256-public-key"), rules.WHY_ALGORITHM),
        ("generic", dict(iss="http://127.0.0.1:1/evil"), rules.WHY_ISSUER),
        ("generic", dict(aud=["someone-else"]), rules.WHY_AUDIENCE),
        ("generic", dict(expired=True), rules.WHY_EXPIRED),
        ("generic", dict(drop=("nonce",)), rules.WHY_NONCE),
        ("generic", dict(add={"email_verified": False}), rules.WHY_EMAIL_UNVERIFIED),
        ("google", dict(hd="evil.example"), rules.WHY_HOSTED_DOMAIN),
        ("google", dict(drop=("hd",)), rules.WHY_HOSTED_DOMAIN),
        ("google", dict(add={"email_verified": False}), rules.WHY_EMAIL_UNVERIFIED),
        ("entra", dict(tid=OTHER_TID), rules.WHY_TENANT),
        ("entra", dict(iss="{base}/" + OTHER_TID + "/v2.0"), rules.WHY_ISSUER),
    ],
)
def test_a_bad_token_is_refused(provider, shape, knobs, why):
    if isinstance(knobs.get("iss"), str):
        knobs["iss"] = knobs["iss"].replace("{base}", provider.base_url)
    assert Login(provider, shape).refused(person(shape), **knobs) == why


def test_a_token_with_the_nonce_of_an_earlier_login_is_refused(provider):
    login = Login(provider, "generic")
    login.run(person("generic"))  # an earlier login: its nonce is spent
    assert login.refused(person("generic"), reuse_nonce=True) == rules.WHY_NONCE


def test_an_hs256_token_keyed_with_the_public_key_fails_even_past_the_header_check(provider):
    # Our allow-list refuses it first; below it, the key set holds no HMAC key at all, so a
    # verifier that listed HS256 would still not accept it.
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    login = Login(provider, "generic")
    claims = {"iss": provider.issuer("generic"), "sub": "x"}
    forged = provider.sign(claims, Misbehaviour(alg="HS256-public-key"))
    with pytest.raises(JoseError):
        jwt.decode(forged, KeySet.import_key_set(provider.jwks()), algorithms=["HS256", "RS256"])
    login.discovery = login.client.discover(login.config)
    with pytest.raises(OidcRefused) as info:
        login.client.verify(login.discovery, forged)
    assert info.value.why == rules.WHY_ALGORITHM


# -- keys: rollover and unknown keys ----------------------------------------------------------


def test_an_unknown_key_refetches_the_key_set_once_then_is_refused(provider):
    login = Login(provider, "generic")
    login.run(person("generic"))  # key set cached
    before = provider.jwks_fetches
    assert login.refused(person("generic"), unknown_key=True) == rules.WHY_UNKNOWN_KEY
    assert provider.jwks_fetches - before == 1


def test_a_key_rollover_is_followed_with_one_refetch(provider):
    login = Login(provider, "generic")
    login.run(person("generic"))
    provider.rotate_keys(keep_old=False)
    before = provider.jwks_fetches
    assert login.run(person("generic")).subject
    assert provider.jwks_fetches - before == 1
    login.run(person("generic"))
    assert provider.jwks_fetches - before == 1  # the new set is cached


def test_unknown_keys_refetch_at_most_once_per_interval(provider):
    login = Login(provider, "generic", client=new_client(min_refetch_seconds=3600))
    login.run(person("generic"))
    before = provider.jwks_fetches
    for _ in range(3):
        assert login.refused(person("generic"), unknown_key=True) == rules.WHY_UNKNOWN_KEY
    assert provider.jwks_fetches - before == 0  # fetched just now: a flood asks nothing


def test_discovery_and_keys_are_cached(provider):
    login = Login(provider, "google")
    login.run(person("google"))
    discovery_url = login.config.discovery_url
    fetched = login.client.fetches[discovery_url]
    jwks = provider.jwks_fetches
    login.run(person("google"))
    assert login.client.fetches[discovery_url] == fetched and provider.jwks_fetches == jwks


# -- PKCE and single-use codes ---------------------------------------------------------------


def test_the_code_needs_its_pkce_verifier(provider):
    login = Login(provider, "generic")
    query, *_ = login.authorize(person("generic"))
    with pytest.raises(OidcRefused) as info:
        login.id_token(query, rules.new_code_verifier())
    assert info.value.why == rules.WHY_TOKEN_REFUSED


def test_a_code_is_good_once(provider):
    login = Login(provider, "generic")
    query, _, _, verifier = login.authorize(person("generic"))
    assert login.id_token(query, verifier)
    with pytest.raises(OidcRefused) as info:
        login.id_token(query, verifier)
    assert info.value.why == rules.WHY_TOKEN_REFUSED


def test_a_wrong_client_secret_is_refused_by_the_provider(provider):
    login = Login(provider, "generic")
    query, _, _, verifier = login.authorize(person("generic"))
    login.secret = "not-the-secret"
    with pytest.raises(OidcRefused) as info:
        login.id_token(query, verifier)
    assert info.value.why == rules.WHY_TOKEN_REFUSED


def test_the_provider_saying_no_reaches_the_callback_as_an_error(provider):
    login = Login(provider, "generic")
    query, state, *_ = login.authorize(None)
    cb = rules.parse_callback(**{k: query.get(k, "") for k in ("state", "code", "error")})
    assert (cb.state, cb.error, cb.code) == (state, "access_denied", "")


# -- where identity may connect -------------------------------------------------------------


def test_plain_http_is_refused_unless_loopback_is_allowed(provider):
    login = Login(provider, "generic", client=new_client(allow_loopback_http=False))
    with pytest.raises(IdpUnavailable) as info:
        login.client.discover(login.config)
    assert info.value.why == oidc_client.WHY_BAD_ANSWER


@pytest.mark.parametrize(
    "address", ["10.0.0.7", "169.254.169.254", "192.168.1.1", "::1", "fd00::1", "127.0.0.1"]
)
def test_an_idp_host_resolving_to_a_private_address_is_refused(address):
    family = 10 if ":" in address else 2

    def resolve(host, port, **kwargs):
        return [(family, 1, 6, "", (address, port))]

    client = new_client(allow_loopback_http=False, resolve=resolve)
    with pytest.raises(IdpUnavailable) as info:
        client.check_destination("https://idp.example.com/.well-known/openid-configuration", "x")
    assert info.value.why == oidc_client.WHY_ADDRESS


def test_a_discovery_document_naming_another_issuer_is_refused(provider):
    # The multi-tenant document names the {tenantid} template: Entra's rule, nobody else's.
    login = Login(provider, "generic", issuer=provider.issuer("entra"))
    with pytest.raises(IdpUnavailable) as info:
        login.client.discover(login.config)
    assert info.value.why == oidc_client.WHY_DISCOVERY_ISSUER
