"""End to end: OIDC sign-in through the gateway against a real provider in the test process
(devtools/oidcprovider.py, authlib's authorization server on loopback), for Google-, Entra-
and generic-shaped providers, and the attacks on it: state (single use, bound to its
tenant and to the browser), nonce replay, PKCE, signatures (alg=none, HS256 keyed with the
public key, an unknown key after one JWKS refetch), iss/aud/exp, Entra's tid, Google's hd,
email_verified=false, the redirect URI (from the canonical origin only), ``next`` (no open
redirect) and accounts keyed on issuer + subject. Every refusal is an audit entry.

The test plays the browser: it follows the gateway's redirect to the provider, the
provider's redirect back, with the cookies a browser would keep.
"""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
import pytest
import requests

from ontrackio.core.db.clusters import Clusters
from ontrackio.devtools.oidcprovider import Misbehaviour, OidcProvider, Person
from ontrackio.gateway.api.oidc import BINDING_COOKIE
from ontrackio.gateway.auth.session import SESSION_COOKIE
from ontrackio.identity.v1 import audit_pb2 as apb
from ontrackio.identity.v1 import audit_pb2_grpc as agrpc
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.identity.v1 import sessions_pb2 as spb
from ontrackio.identity.v1 import sessions_pb2_grpc as sgrpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import (  # noqa: F401 - fixtures
    Gateway,
    gateway_fixture,
    make_token,
    new_source,
    request_bytes,
)
from tests.helpers import create_tenant, eventually, md, ontrack

pytestmark = pytest.mark.e2e

TID = "5b4f0a6e-1f0c-4e3a-9d7b-2c1e0f9a8b7c"
OTHER_TID = "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
SHAPE = {"google": "google", "entra": "entra", "oidc": "generic"}


@dataclass
class Reply:
    """One response with every header line kept (a browser sees each Set-Cookie)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    @property
    def cookies(self) -> dict[str, str]:
        """cookie name -> its whole Set-Cookie line"""
        return {v.split("=", 1)[0]: v for k, v in self.headers if k == "set-cookie"}

    def cookie(self, name: str) -> str:
        return self.cookies[name].split("=", 1)[1].split(";", 1)[0]

    def json(self):
        return json.loads(self.body)


def send(gateway: Gateway, method: str, target: str, host: str, headers=()) -> Reply:
    """A browser's request to the gateway, from a loopback address of its own."""
    with socket.socket() as sock:
        sock.settimeout(40)
        sock.bind((new_source(), 0))
        sock.connect(("127.0.0.1", gateway.port))
        sock.sendall(request_bytes(method, target, host, list(headers), close=True))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    pairs = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:])]
    return Reply(int(lines[0].split()[1]), pairs, body)


@dataclass
class Tenant:
    """A tenant with one provider configured through the admin API, and a verified domain."""

    slug: str
    domain: str
    token: str
    provider: str
    client_id: str = ""
    secret: str = ""


def audit(channels, slug: str, action: str = "signin.refused") -> list[dict]:
    stub = agrpc.AuditServiceStub(channels["identity"])
    r = stub.ListAudit(
        apb.ListAuditRequest(action=action, page_size=200), metadata=md(slug), timeout=10
    )
    return [{**json.loads(e.new_json or "null"), "_e": e} for e in r.entries]


def refusal_reasons(channels, slug: str) -> list[str]:
    return [e["reason"] for e in audit(channels, slug)]


class Flow:
    """The browser's side of one tenant's sign-ins."""

    def __init__(self, gateway: Gateway, channels, provider: OidcProvider, t: Tenant):
        self.gateway, self.channels, self.provider, self.t = gateway, channels, provider, t

    def get(self, target: str, headers=(), host: str | None = None) -> Reply:
        return send(self.gateway, "GET", target, host or self.gateway.host(self.t.slug), headers)

    def login(self, next_path: str = "/", headers=(), host: str | None = None) -> Reply:
        query = "?" + urlencode({"next": next_path}) if next_path else ""
        return self.get(f"/auth/oidc/{self.t.provider}/login{query}", headers, host)

    def to_provider(self, who: Person | None, **login) -> tuple[str, str, dict]:
        """(callback path + query, binding cookie, the authorization request's query)."""
        self.provider.sign_in_as(self.t.client_id, who)
        r = self.login(**login)
        assert r.status == 302, r
        binding = r.cookie(BINDING_COOKIE)
        authz = r.header("location")
        asked = {k: v[0] for k, v in parse_qs(urlsplit(authz).query).items()}
        back = requests.get(authz, allow_redirects=False, timeout=10)
        assert back.status_code == 302, back.text
        location = urlsplit(back.headers["location"])
        return f"{location.path}?{location.query}", binding, asked

    def callback(self, target: str, binding: str | None, slug: str | None = None) -> Reply:
        headers = [("Cookie", f"{BINDING_COOKIE}={binding}")] if binding is not None else []
        return self.get(target, headers, self.gateway.host(slug) if slug else None)

    def sign_in(self, who: Person | None, **login) -> Reply:
        target, binding, _ = self.to_provider(who, **login)
        return self.callback(target, binding)

    def session(self, reply: Reply) -> dict:
        assert reply.status == 303, reply
        cookie = reply.cookie(SESSION_COOKIE)
        me = self.get("/api/v1/session", [("Cookie", f"{SESSION_COOKIE}={cookie}")])
        assert me.status == 200, me
        return me.json()

    def refused(self, who: Person | None, why: str, **knobs) -> Reply:
        """Sign-in with the provider misbehaving as ``knobs`` is a 403 audited as ``why``."""
        self.provider.misbehave(self.t.client_id, Misbehaviour(**knobs))
        try:
            r = self.sign_in(who)
        finally:
            self.provider.behave(self.t.client_id)
        assert r.status == 403, r
        assert r.header("content-type") == "application/problem+json"
        assert why not in r.body.decode()  # one answer whatever the reason
        assert "Max-Age=0" in r.cookies[BINDING_COOKIE]  # the binding is cleared either way
        assert refusal_reasons(self.channels, self.t.slug)[0] == why
        return r


def person(t: Tenant, **changes) -> Person:
    n = uuid.uuid4().hex[:8]
    claims: dict = dict(changes.pop("claims", {}))
    if t.provider == "google":
        claims.setdefault("hd", t.domain)
    if t.provider == "entra":
        claims.setdefault("tid", TID)
        claims.setdefault("oid", str(uuid.uuid4()))
        claims.setdefault("xms_edov", True)
    return Person(
        sub=changes.pop("sub", f"sub-{n}"),
        email=changes.pop("email", f"user-{n}@{t.domain}"),
        name="Ada Example",
        email_verified=changes.pop("email_verified", None if t.provider == "entra" else True),
        claims=claims,
    )


def new_tenant(gateway, channels, provider_server, provider: str) -> Tenant:
    slug = unique("oi")
    domain = f"{slug}.example.com"
    create_tenant(channels, slug, domains=[domain])
    igrpc.TenantServiceStub(channels["identity"]).VerifyDomain(
        ipb.VerifyDomainRequest(slug=slug, domain=domain), timeout=10
    )
    sgrpc.SessionServiceStub(channels["identity"]).SetSignInPolicy(
        spb.SignInPolicy(jit_provisioning=True), metadata=md(slug), timeout=10
    )
    _, token = make_token(channels, slug, "admin")
    t = Tenant(slug, domain, token, provider)
    redirect = f"http://{gateway.host(slug)}/auth/oidc/{provider}/callback"
    t.client_id, t.secret = provider_server.register(SHAPE[provider], redirect)
    body: dict = {
        "client_id": t.client_id,
        "client_secret": t.secret,
        "issuer": provider_server.issuer(SHAPE[provider]),
    }
    if provider == "google":
        body["hosted_domains"] = [domain]
    if provider == "entra":
        body["entra_tenant"] = TID
    r = gateway.call("PUT", f"/admin/api/v1/sso/oidc/{provider}", slug, token, body)
    assert r.status == 200, r
    assert r.json()["redirect_uri"] == redirect
    return t


@pytest.fixture(scope="module")
def flows(gateway, channels, oidc_provider):
    made = {}

    def flow(provider: str) -> Flow:
        if provider not in made:
            t = new_tenant(gateway, channels, oidc_provider, provider)
            made[provider] = Flow(gateway, channels, oidc_provider, t)
        return made[provider]

    return flow


# -- each provider signs a person in ---------------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "entra", "oidc"])
def test_a_person_signs_in(flows, oidc_provider, provider):
    f = flows(provider)
    who = person(f.t, claims={"amr": ["pwd", "mfa"]} if provider != "google" else {})
    target, binding, asked = f.to_provider(who, next_path="/assets?page=2")
    # The authorization request: code flow, our client, PKCE S256, a nonce and the state.
    assert asked["response_type"] == "code" and asked["client_id"] == f.t.client_id
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["nonce"] and len(asked["state"]) == 43
    assert (
        asked["redirect_uri"] == f"http://{f.gateway.host(f.t.slug)}/auth/oidc/{provider}/callback"
    )
    r = f.callback(target, binding)
    assert r.status == 303, r
    assert r.header("location") == "/assets?page=2"
    jar = r.cookies
    assert "HttpOnly" in jar[SESSION_COOKIE] and "SameSite=lax" in jar[SESSION_COOKIE]
    assert "Max-Age=0" in jar[BINDING_COOKIE]  # the binding is spent
    me = f.session(r)
    assert me["method"] == f"oidc:{provider}"
    assert me["user"]["email"] == who.email
    issuer = (
        f"{oidc_provider.base_url}/{TID}/v2.0"
        if provider == "entra"
        else oidc_provider.issuer(SHAPE[provider])
    )
    assert me["idp"] == issuer


def test_the_binding_cookie_is_host_only_and_http_only(flows):
    f = flows("oidc")
    f.provider.sign_in_as(f.t.client_id, person(f.t))
    r = f.login()
    line = r.cookies[BINDING_COOKIE]
    assert "HttpOnly" in line and "SameSite=lax" in line and "Path=/" in line
    assert "Domain" not in line and r.header("cache-control") == "no-store"


@pytest.mark.parametrize("provider", ["entra", "oidc"])
def test_accounts_are_keyed_on_issuer_and_subject_never_email(flows, channels, provider):
    f = flows(provider)
    first = person(f.t)
    me = f.session(f.sign_in(first))
    same = {"sub": first.sub} if provider == "oidc" else {"claims": dict(first.claims)}
    again = f.session(f.sign_in(person(f.t, email=first.email, **same)))
    assert again["user"]["id"] == me["user"]["id"]  # the same subject, the same account
    # The same email under another subject (Entra: another oid) is never that account.
    impostor = person(f.t, email=first.email)
    r = f.sign_in(impostor)
    assert r.status == 403, r
    assert SESSION_COOKIE not in r.cookies
    accounts = audit(channels, f.t.slug, "sso_account.link")
    linked = [e for e in accounts if e["_e"].target == f"user:{me['user']['id']}"]
    assert len(linked) == 1


# -- state, browser, tenant ------------------------------------------------------------------


def test_a_state_is_good_once(flows, channels):
    f = flows("oidc")
    target, binding, _ = f.to_provider(person(f.t))
    assert f.callback(target, binding).status == 303
    replay = f.callback(target, binding)
    assert replay.status == 403, replay
    assert "state-unknown" in refusal_reasons(channels, f.t.slug)


def test_a_callback_from_another_browser_is_refused(flows, channels):
    f = flows("oidc")
    target, binding, _ = f.to_provider(person(f.t))
    assert f.callback(target, None).status == 403  # no binding cookie
    target, binding, _ = f.to_provider(person(f.t))
    _, other_binding, _ = f.to_provider(person(f.t))  # the attacker's own login
    assert f.callback(target, other_binding).status == 403
    assert refusal_reasons(channels, f.t.slug).count("state-other-browser") >= 2


def test_a_state_is_bound_to_its_tenant(flows, gateway, channels, oidc_provider):
    a = flows("oidc")
    b = Flow(gateway, channels, oidc_provider, new_tenant(gateway, channels, oidc_provider, "oidc"))
    target, binding, _ = a.to_provider(person(a.t))
    # The same callback at tenant b's host: b has no such login.
    r = a.callback(target, binding, slug=b.t.slug)
    assert r.status == 403, r
    assert refusal_reasons(channels, b.t.slug) == ["state-unknown"]
    # ...and it is spent at b only because b never had it: a's login still works.
    assert a.callback(target, binding).status == 303


def test_an_expired_login_is_refused(flows, channels, settings):
    f = flows("oidc")
    target, binding, _ = f.to_provider(person(f.t))
    conninfo = Clusters(settings).tenant_conninfo("identity", f.t.slug, "main")
    with psycopg.connect(conninfo, autocommit=True) as conn:  # as if ten minutes had passed
        conn.execute("UPDATE oidc_logins SET expires_at = now() - interval '1 second'")
    assert f.callback(target, binding).status == 403
    assert refusal_reasons(channels, f.t.slug)[0] == "state-expired"


def test_an_unreachable_idp_is_a_503(gateway, channels, oidc_provider):
    t = new_tenant(gateway, channels, oidc_provider, "oidc")
    change = {"client_id": t.client_id, "issuer": "http://127.0.0.1:9/nobody"}
    r = gateway.call("PUT", "/admin/api/v1/sso/oidc/oidc", t.slug, t.token, change)
    assert r.status == 200, r
    f = Flow(gateway, channels, oidc_provider, t)
    r = f.login()
    assert r.status == 503 and r.header("content-type") == "application/problem+json"


def test_a_malformed_state_or_code_is_refused_and_audited(flows, channels):
    f = flows("google")
    for query in ("state=short&code=x", "code=abc", f"state={'A' * 43}"):
        r = f.callback(f"/auth/oidc/google/callback?{query}", "whatever")
        assert r.status == 403, (query, r)
    reasons = refusal_reasons(channels, f.t.slug)
    assert "state-malformed" in reasons and "code-malformed" in reasons


def test_the_idps_error_is_refused_and_audited(flows, channels):
    f = flows("oidc")
    r = f.sign_in(None)  # the provider answers error=access_denied
    assert r.status == 403, r
    entry = next(e for e in audit(channels, f.t.slug) if e["reason"] == "idp-error")
    assert entry["detail"]["error"] == "access_denied"
    assert entry["method"] == "oidc:oidc"


# -- what the provider signs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, knobs, why",
    [
        ("oidc", dict(alg="none"), "algorithm-not-allowed"),
        ("oidc", dict(alg="HS256-public-key"), "algorithm-not-allowed"),
        ("oidc", dict(iss="http://127.0.0.1:9/evil"), "issuer-mismatch"),
        ("oidc", dict(aud=["another-client"]), "audience-mismatch"),
        ("oidc", dict(expired=True), "expired"),
        ("oidc", dict(reuse_nonce=True), "nonce-mismatch"),
        ("oidc", dict(add={"email_verified": False}), "email-unverified"),
        ("entra", dict(tid=OTHER_TID), "entra-tenant-mismatch"),
        ("entra", dict(iss="{base}/" + OTHER_TID + "/v2.0"), "issuer-mismatch"),
        ("google", dict(hd="evil.example"), "hosted-domain-mismatch"),
        ("google", dict(add={"email_verified": False}), "email-unverified"),
    ],
)
def test_a_bad_id_token_is_refused(flows, oidc_provider, provider, knobs, why):
    f = flows(provider)
    if provider == "oidc" and knobs.get("reuse_nonce"):
        assert f.sign_in(person(f.t)).status == 303  # an earlier login: its nonce is spent
    if isinstance(knobs.get("iss"), str):
        knobs["iss"] = knobs["iss"].replace("{base}", oidc_provider.base_url)
    f.refused(person(f.t), why, **knobs)


def test_an_unknown_key_refetches_the_jwks_once_then_is_refused(flows, oidc_provider):
    f = flows("oidc")
    assert f.sign_in(person(f.t)).status == 303  # the key set is cached
    before = oidc_provider.jwks_fetches
    f.refused(person(f.t), "signing-key-unknown", unknown_key=True)
    assert oidc_provider.jwks_fetches - before == 1


def test_a_key_rollover_needs_nothing_from_the_admin(flows, oidc_provider):
    f = flows("google")
    assert f.sign_in(person(f.t)).status == 303
    oidc_provider.rotate_keys(keep_old=False)
    before = oidc_provider.jwks_fetches
    assert f.sign_in(person(f.t)).status == 303
    assert oidc_provider.jwks_fetches - before == 1


# -- redirect URI and next ---------------------------------------------------------------


def test_the_redirect_uri_never_comes_from_the_request(flows, gateway):
    f = flows("oidc")
    f.provider.sign_in_as(f.t.client_id, person(f.t))
    forged = [("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "https")]
    for host in (None, f"{f.t.domain}:{gateway.port}"):  # the tenant's host, its custom domain
        r = eventually(lambda h=host: (x := f.login(headers=forged, host=h)).status == 302 and x)
        asked = parse_qs(urlsplit(r.header("location")).query)
        assert asked["redirect_uri"] == [f"http://{gateway.host(f.t.slug)}/auth/oidc/oidc/callback"]


@pytest.mark.parametrize("evil", ["//evil.example/x", "https://evil.example", "/\\evil.example"])
def test_next_never_leaves_the_host(flows, evil):
    f = flows("oidc")
    r = f.sign_in(person(f.t), next_path=evil)
    assert r.status == 303 and r.header("location") == "/"


# -- configuration ---------------------------------------------------------------------------


def test_the_configuration_never_shows_the_secret(flows, gateway, channels, settings):
    f = flows("google")
    got = gateway.call("GET", "/admin/api/v1/sso/oidc/google", f.t.slug, f.t.token)
    assert got.status == 200, got
    body = got.json()
    assert body["has_client_secret"] is True and f.t.secret not in got.body.decode()
    assert body["hosted_domains"] == [f.t.domain]
    # Kept when a change omits it; the change is audited without it.
    change = {"client_id": f.t.client_id, "hosted_domains": [f.t.domain], "issuer": body["issuer"]}
    r = gateway.call("PUT", "/admin/api/v1/sso/oidc/google", f.t.slug, f.t.token, change)
    assert r.status == 200 and r.json()["has_client_secret"] is True
    entries = audit(channels, f.t.slug, "oidc_provider.set")
    assert [e["client_secret"] for e in entries][:2] == ["kept", "set"]
    assert all(f.t.secret not in e["_e"].new_json + e["_e"].old_json for e in entries)
    # At rest: sealed with the tenant's key.
    assert f.t.secret.encode() not in stored_secret(settings, f.t.slug, "google")
    assert f.sign_in(person(f.t)).status == 303  # and still works


def stored_secret(settings, slug: str, provider: str) -> bytes:
    conninfo = Clusters(settings).tenant_conninfo("identity", slug, "main")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT client_secret FROM oidc_providers WHERE provider = %s", (provider,)
        ).fetchone()
    return bytes(row[0])


def test_a_key_rotation_reencrypts_the_client_secret(system, gateway, channels, settings):
    from ontrackio.devtools.oidcprovider import OidcProvider

    with OidcProvider() as own:  # its own provider: a rotation of its own tenant only
        t = new_tenant(gateway, channels, own, "oidc")
        f = Flow(gateway, channels, own, t)
        assert stored_secret(settings, t.slug, "oidc")[1:5] == b"\x00\x00\x00\x01"
        out = ontrack(system, "tenant", "key", "rotate", t.slug, "--wait", "--timeout", "60")
        assert out.returncode == 0, out.stderr
        eventually(
            lambda: stored_secret(settings, t.slug, "oidc")[1:5] == b"\x00\x00\x00\x02",
            timeout=60,
        )
        assert t.secret.encode() not in stored_secret(settings, t.slug, "oidc")
        assert f.sign_in(person(t)).status == 303  # the re-encrypted secret still works


@pytest.mark.parametrize(
    "provider, body",
    [
        ("google", {"client_id": "c", "client_secret": "s"}),  # no Workspace domain
        ("entra", {"client_id": "c", "client_secret": "s", "entra_tenant": "common"}),
        ("oidc", {"client_id": "c", "client_secret": "s", "issuer": "http://idp.example.com"}),
        ("oidc", {"client_id": "c", "issuer": "https://idp.example.com"}),  # no secret yet
    ],
)
def test_a_bad_configuration_is_a_400(gateway, channels, provider, body):
    slug = unique("oc")
    create_tenant(channels, slug)
    _, token = make_token(channels, slug, "admin")
    r = gateway.call("PUT", f"/admin/api/v1/sso/oidc/{provider}", slug, token, body)
    assert r.status == 400, r
    assert r.headers["content-type"] == "application/problem+json"


def test_an_unconfigured_provider_is_a_404_and_unknown_ones_a_400(flows, gateway):
    f = flows("oidc")
    assert f.get("/auth/oidc/entra/login").status == 404
    assert f.get("/auth/oidc/saml/login").status == 400
    assert gateway.call("GET", "/admin/api/v1/sso/oidc/oidc", f.t.slug).status == 401


# -- MFA evidence (issue 13) ------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["google", "entra", "oidc"])
def test_mfa_evidence_in_amr_or_acr_passes_the_policy_and_its_absence_holds_the_session(
    gateway, channels, oidc_provider, provider
):
    t = new_tenant(gateway, channels, oidc_provider, provider)
    f = Flow(gateway, channels, oidc_provider, t)
    policies = sgrpc.SessionServiceStub(channels["identity"])
    # (A Set replaces the booleans: JIT stays on.)
    policies.SetSignInPolicy(
        spb.SignInPolicy(mfa_policy="everyone", jit_provisioning=True), metadata=md(t.slug)
    )

    proven = f.sign_in(person(t, claims={"amr": ["pwd", "mfa"]}))
    assert proven.header("location") == "/", proven
    me = f.session(proven)
    assert (me["stage"], me["mfa_source"], me["factor"]) == ("full", "idp", "mfa")

    # No evidence: a new (JIT) person is held for enrolment, and sent to the MFA page.
    bare = f.sign_in(person(t, claims={"amr": ["pwd"]}), next_path="/assets")
    assert bare.header("location") == "/signin/mfa?next=%2Fassets", bare
    held = f.session(bare)
    assert (held["stage"], held["mfa_source"]) == ("enrol", "none")

    # A tenant's own list: an acr value of its choosing counts, the defaults no longer do.
    evidence = spb.SignInPolicy(mfa_evidence=spb.MfaEvidence(), jit_provisioning=True)
    evidence.mfa_evidence.by_kind[f"oidc:{provider}"].values.append("urn:example:acr:mfa")
    policies.SetSignInPolicy(evidence, metadata=md(t.slug))
    by_acr = f.session(f.sign_in(person(t, claims={"acr": "urn:example:acr:mfa"})))
    assert (by_acr["stage"], by_acr["factor"]) == ("full", "urn:example:acr:mfa")
    amr_only = f.session(f.sign_in(person(t, claims={"amr": ["mfa"]})))
    assert amr_only["stage"] == "enrol"
