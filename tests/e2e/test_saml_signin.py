"""SAML sign-in end to end through the gateway, against a real IdP (pysaml2 signing with
xmlsec1: devtools/samlidp.py) answering the AuthnRequests the gateway's redirect carries.

The tenant's SAML is configured with an admin token over HTTP; its people's domain is a
custom domain the operator verified (TenantService.VerifyDomain). A browser (raw sockets,
a cookie jar) follows ``/auth/saml/login`` to the IdP, posts the IdP's form to
``/auth/saml/acs`` and gets a session. Then what must not sign anyone in: no account with
JIT off, a domain not verified, the same response twice, hostile XML, open redirects in
``next``, forwarded headers trying to move the ACS URL, Destination or Audience elsewhere.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
import zlib
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pyotp
import pytest
from lxml import etree

from ontrackio.devtools.samlidp import (
    EMAIL_ATTRIBUTE,
    ENTRA_MFA,
    GROUPS_ATTRIBUTE,
    NAME_ATTRIBUTE,
    PASSWORD_PROTECTED,
    SamlIdP,
    User,
    encode,
)
from ontrackio.gateway.api import saml as gateway_saml
from ontrackio.gateway.auth.session import SESSION_COOKIE
from ontrackio.identity.sso.saml import acs, rules
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.e2e.sessions_kit import create_user
from tests.e2e.test_gateway_kit import (  # noqa: F401 - fixture
    Reply,
    gateway_fixture,
    make_token,
    new_source,
    raw,
    request_bytes,
)
from tests.helpers import create_tenant, eventually, extra_gateway

pytestmark = pytest.mark.e2e

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
PROBLEM = "application/problem+json"
FORWARDED = [
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "443"),
    ("Forwarded", "host=evil.example;proto=https"),
    ("X-Original-Host", "evil.example"),
]
_FIELD = re.compile(r'name="(SAMLResponse|RelayState)" value="([^"]*)"')


# -- the browser --------------------------------------------------------------------------------


class Browser:
    """A cookie jar and a source address, over raw sockets to one tenant's host."""

    def __init__(self, port: int, host: str, *, source: str | None = None, headers=()):
        self.port, self.host = port, host
        self.source = source or new_source()
        self.extra = list(headers)  # sent with every request (forwarded headers, …)
        self.jar: dict[str, str] = {}

    def send(self, method: str, target: str, headers=(), body: bytes = b"") -> Reply:
        hdrs = [("User-Agent", "e2e-browser/1.0"), *self.extra, *headers]
        if self.jar:
            hdrs.append(("Cookie", "; ".join(f"{k}={v}" for k, v in self.jar.items())))
        r = raw(
            self.port,
            request_bytes(method, target, self.host, hdrs, body, close=True),
            source=self.source,
        )
        for header in r.set_cookies:
            name, _, rest = header.partition("=")
            self.jar[name] = rest.split(";", 1)[0]
        return r

    def post_acs(self, saml_response: str, relay_state: str = "", accept: str | None = None):
        """What the IdP's auto-post form sends (cross-site: the IdP's Origin)."""
        headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "https://idp.e2e.test"),
        ]
        if accept is not None:
            headers.append(("Accept", accept))
        fields = {"SAMLResponse": saml_response}
        if relay_state:
            fields["RelayState"] = relay_state
        return self.send("POST", "/auth/saml/acs", headers, urlencode(fields).encode())


def authn_request(location: str) -> tuple[etree._Element, str, str]:
    """The AuthnRequest a login redirect carries (HTTP-Redirect binding), its raw
    SAMLRequest value and RelayState."""
    q = parse_qs(urlsplit(location).query)
    value = q["SAMLRequest"][0]
    xml = zlib.decompress(base64.b64decode(value), -15)
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    return root, value, q.get("RelayState", [""])[0]


def idp_answers(idp: SamlIdP, location: str, user: User) -> tuple[str, str, str]:
    """The IdP signs ``user`` in for the AuthnRequest at ``location``: (the URL its form
    posts to, SAMLResponse, RelayState), read from the form it serves."""
    _, value, relay = authn_request(location)
    idp.user = user
    acs_url, form = idp.answer_authn_request(value, relay)
    fields = {k: html.unescape(v) for k, v in _FIELD.findall(form)}
    return acs_url, fields["SAMLResponse"], fields.get("RelayState", "")


def person(email: str, name_id: str | None = None, **attributes) -> User:
    attrs = {EMAIL_ATTRIBUTE: [email], NAME_ATTRIBUTE: ["E2E Person"], **attributes}
    if name_id is None:
        return User(name_id=email, attributes=attrs)
    return User(name_id=name_id, name_id_format=PERSISTENT, attributes=attrs)


# -- tenants ------------------------------------------------------------------------------------


class Tenant:
    def __init__(self, gateway, channels, idp: SamlIdP, *, jit: bool):
        self.gateway, self.idp = gateway, idp
        self.slug = unique("ss")
        self.domain = f"corp.{self.slug}.example.com"
        self.unverified = f"other.{self.slug}.example.com"
        create_tenant(channels, self.slug, domains=[self.domain, self.unverified])
        igrpc.TenantServiceStub(channels["identity"]).VerifyDomain(
            ipb.VerifyDomainRequest(slug=self.slug, domain=self.domain), timeout=10
        )
        _, self.admin = make_token(channels, self.slug)  # api:read, api:write, admin
        self.origin = f"http://{gateway.host(self.slug)}"
        self.sp = rules.SpEndpoints.from_origin(self.origin)
        r = self.api(
            "PUT",
            "/admin/api/v1/sso/saml",
            {
                "idp_entity_id": idp.entity_id,
                "sso_url": idp.sso_url,
                "certificates": [idp.signer.cert_pem],
                "email_attribute": EMAIL_ATTRIBUTE,
                "name_attribute": NAME_ATTRIBUTE,
                "groups_attribute": GROUPS_ATTRIBUTE,
            },
        )
        assert r.status == 200, r
        assert r.json()["acs_url"] == self.sp.acs_url
        policy = self.api("PUT", "/admin/api/v1/signin-policy", {"jit_provisioning": jit})
        assert policy.status == 200 and policy.json()["jit_provisioning"] is jit, policy

    def api(self, method: str, path: str, body=None) -> Reply:
        return self.gateway.call(method, path, self.slug, self.admin, body)

    def email(self, local: str | None = None, domain: str | None = None) -> str:
        return f"{local or unique('p')}@{domain or self.domain}"

    def browser(self, **kw) -> Browser:
        return Browser(self.gateway.port, self.gateway.host(self.slug), **kw)

    def audit(self, action: str) -> list[dict]:
        r = self.api("GET", f"/admin/api/v1/audit?action={action}&page_size=200")
        assert r.status == 200, r
        return r.json()["items"]

    def refusals(self) -> list[str]:
        """signin.refused reasons, newest first."""
        return [e["new"]["reason"] for e in self.audit("signin.refused")]

    def causes(self) -> list[str]:
        """saml.response_refused causes, newest first."""
        return [e["new"]["cause"] for e in self.audit("saml.response_refused")]

    def start(self, b: Browser, next_path: str = "/assets") -> Reply:
        r = b.send("GET", f"/auth/saml/login?next={quote(next_path, safe='')}")
        assert r.status == 302, r
        return r

    def sign_in(self, b: Browser, user: User, next_path: str = "/assets", accept=BROWSER_ACCEPT):
        """login → the IdP → the ACS post; the ACS's reply."""
        start = self.start(b, next_path)
        acs_url, value, relay = idp_answers(self.idp, start.headers["location"], user)
        assert acs_url == self.sp.acs_url
        return b.post_acs(value, relay, accept=accept)

    def who(self, b: Browser) -> dict:
        r = b.send("GET", "/api/v1/session")
        assert r.status == 200, r
        return r.json()


@pytest.fixture(scope="module")
def idp():
    i = SamlIdP(f"https://idp.{unique('i')}.e2e.test/metadata", sso_url="https://idp.e2e.test/sso")
    yield i
    i.close()


@pytest.fixture(scope="module")
def tenant(gateway, channels, idp) -> Tenant:
    return Tenant(gateway, channels, idp, jit=False)


@pytest.fixture(scope="module")
def jit_tenant(gateway, channels, idp) -> Tenant:
    return Tenant(gateway, channels, idp, jit=True)


def cookie_attributes(reply: Reply) -> tuple[str, set[str]]:
    (header,) = [c for c in reply.set_cookies if c.startswith(SESSION_COOKIE + "=")]
    first, *attrs = [p.strip() for p in header.split(";")]
    return first.partition("=")[2], {a.lower() for a in attrs}


# -- signing in ---------------------------------------------------------------------------------


def test_login_redirects_to_the_idp_with_an_authn_request_for_our_canonical_acs(tenant, idp):
    r = tenant.start(tenant.browser())
    location = r.headers["location"]
    assert location.startswith(idp.sso_url + "?SAMLRequest=")
    assert r.headers["cache-control"] == "no-store"
    request, _, relay = authn_request(location)
    assert request.get("AssertionConsumerServiceURL") == tenant.sp.acs_url
    assert request.get("Destination") == idp.sso_url
    issuer = request.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
    assert issuer is not None and issuer.text == tenant.sp.entity_id
    assert relay == request.get("ID")  # RelayState only names our request


def test_an_existing_user_signs_in_and_gets_a_host_only_session(tenant, idp, channels):
    email = tenant.email("ann")
    user_id = create_user(channels, tenant.slug, "member", email=email)
    b = tenant.browser()
    r = tenant.sign_in(b, person(email))
    assert r.status == 303, r
    assert r.headers["location"] == "/assets"
    assert r.headers["cache-control"] == "no-store"
    value, attrs = cookie_attributes(r)
    assert value.startswith("ots_")
    assert {"httponly", "path=/", "samesite=lax"} <= attrs
    assert not [a for a in attrs if a.startswith("domain")]  # host-only
    # Secure although the test stack serves http: its hosts are *.localhost, which browsers
    # treat as secure (GatewaySettings.secure_cookies), so real browsers keep __Host- there.
    assert "secure" in attrs
    me = tenant.who(b)
    assert me["user"]["id"] == user_id and me["user"]["email"] == email
    assert me["method"] == "saml" and me["idp"] == idp.entity_id
    assert me["roles"] == ["member"] and me["mfa_source"] == "none"
    assert me["user_agent"] == "e2e-browser/1.0"


def test_without_jit_an_unknown_person_is_refused_with_one_generic_answer(tenant):
    before = tenant.refusals()
    r = tenant.sign_in(tenant.browser(), person(tenant.email()))
    assert r.status == 403 and r.headers["content-type"].startswith("text/html"), r
    page = r.body.decode()
    assert gateway_saml.SSO_REFUSED in page
    assert "no-account" not in page and "account" not in page.lower()
    assert SESSION_COOKIE not in " ".join(r.set_cookies)
    after = tenant.refusals()
    assert after[0] == "no-account" and len(after) == len(before) + 1
    # An API client gets the same words as a problem.
    api = tenant.sign_in(tenant.browser(), person(tenant.email()), accept=None)
    assert api.status == 403 and api.headers["content-type"] == PROBLEM, api
    assert api.json()["detail"] == gateway_saml.SSO_REFUSED


def test_with_jit_a_new_person_is_created_as_member_whatever_their_attributes_say(jit_tenant):
    t = jit_tenant
    email, name_id = t.email(), unique("nid")
    claims = {GROUPS_ATTRIBUTE: ["admin", "owner"], "role": ["admin"]}
    b = t.browser()
    r = t.sign_in(b, person(email, name_id, **claims))
    assert r.status == 303, r
    me = t.who(b)
    assert me["roles"] == ["member"] and me["user"]["email"] == email
    assert me["method"] == "saml"
    # The next sign-in finds the same account (no second user).
    again = t.browser()
    assert t.sign_in(again, person(email, name_id, **claims)).status == 303
    assert t.who(again)["user"]["id"] == me["user"]["id"]
    users = t.api("GET", "/api/v1/users?page_size=200").json()["items"]
    assert [u["email"] for u in users].count(email) == 1
    links = [e for e in t.audit("sso_account.link") if e["target"] == f"user:{me['user']['id']}"]
    assert len(links) == 1


def test_an_invited_user_is_linked_on_first_sso_sign_in_then_found_by_issuer_and_name_id(
    tenant,
):
    email = tenant.email("invited")
    invited = tenant.api("POST", "/admin/api/v1/invitations", {"email": email, "role": "member"})
    assert invited.status == 201, invited
    user_id = invited.json()["user_id"]
    name_id = unique("emp")  # a persistent NameID, not the email
    b = tenant.browser()
    assert tenant.sign_in(b, person(email, name_id)).status == 303
    assert tenant.who(b)["user"]["id"] == user_id
    links = [e for e in tenant.audit("sso_account.link") if e["target"] == f"user:{user_id}"]
    assert len(links) == 1 and links[0]["new"]["issuer"] == tenant.idp.entity_id
    # Found by (issuer, NameID) afterwards, whatever email the IdP now sends.
    renamed = tenant.browser()
    assert tenant.sign_in(renamed, person(tenant.email("renamed"), name_id)).status == 303
    assert tenant.who(renamed)["user"]["id"] == user_id
    # Another NameID with the same email does not take the linked account over.
    before = tenant.refusals()
    other = tenant.sign_in(tenant.browser(), person(email, unique("emp")))
    assert other.status == 403, other
    after = tenant.refusals()
    assert after[0] == "email-linked-to-another-subject" and len(after) == len(before) + 1


def test_a_break_glass_owner_is_never_linked_to_an_sso_account_by_email(channels, tenant):
    """The break-glass password must still open the tenant when the IdP fails, so no IdP
    account can be linked to that owner by an email it asserts."""
    from tests.e2e.sessions_kit import create_user

    email = tenant.email("breakglass")
    owner = create_user(channels, tenant.slug, "owner", email=email)
    r = tenant.api("PUT", "/admin/api/v1/signin-policy", {"break_glass_users": [owner]})
    assert r.status == 200, r
    before = tenant.refusals()
    refused = tenant.sign_in(tenant.browser(), person(email, unique("emp")))
    assert refused.status == 403, refused
    after = tenant.refusals()
    assert after[0] == "break-glass-account" and len(after) == len(before) + 1


def test_the_sign_in_page_offers_saml_and_hides_the_password_form_when_sso_is_required(
    channels, gateway, idp
):
    """SSO required: the SAML button (keeping next) and a break-glass link, no password
    form; the link shows the form (identity still decides who may use it)."""
    from tests.e2e.sessions_kit import create_user

    t = Tenant(gateway, channels, idp, jit=False)
    before = t.browser().send("GET", "/signin?next=/assets").body.decode()
    assert 'href="/auth/saml/login?next=%2Fassets"' in before and 'name="password"' in before
    owner = create_user(channels, t.slug, "owner", email=t.email("glass"))
    r = t.api(
        "PUT", "/admin/api/v1/signin-policy", {"sso_required": True, "break_glass_users": [owner]}
    )
    assert r.status == 200, r
    page = t.browser().send("GET", "/signin?next=/assets")
    html = page.body.decode()
    assert page.status == 200 and 'href="/auth/saml/login?next=%2Fassets"' in html
    assert 'name="password"' not in html
    assert 'href="/signin?break_glass=1&amp;next=%2Fassets"' in html
    glass = t.browser().send("GET", "/signin?break_glass=1&next=/assets").body.decode()
    assert 'name="password"' in glass and 'value="/assets"' in glass
    assert t.browser().send("GET", "/signin?break_glass=yes").status == 400


def test_an_email_at_a_domain_not_verified_is_refused_even_with_jit(jit_tenant):
    t = jit_tenant
    for domain in (t.unverified, "evil.example", t.domain + ".evil.example"):
        before = t.refusals()
        r = t.sign_in(t.browser(), person(t.email(domain=domain)))
        assert r.status == 403, (domain, r)
        after = t.refusals()
        assert after[0] == "domain-not-allowed" and len(after) == len(before) + 1


def test_every_refusal_looks_the_same_to_the_browser(tenant, jit_tenant):
    unknown = tenant.sign_in(tenant.browser(), person(tenant.email()))
    foreign = jit_tenant.sign_in(jit_tenant.browser(), person(jit_tenant.email(domain="x.test")))
    b = tenant.browser()
    start = tenant.start(b)
    _, value, relay = idp_answers(tenant.idp, start.headers["location"], person(tenant.email()))
    b.post_acs(value, relay, accept=BROWSER_ACCEPT)
    replayed = b.post_acs(value, relay, accept=BROWSER_ACCEPT)
    assert unknown.status == foreign.status == replayed.status == 403
    assert unknown.body == foreign.body == replayed.body


def test_the_same_response_posted_twice_signs_in_once(tenant, channels):
    email = tenant.email()
    create_user(channels, tenant.slug, "member", email=email)
    b = tenant.browser()
    start = tenant.start(b)
    _, value, relay = idp_answers(tenant.idp, start.headers["location"], person(email))
    first = b.post_acs(value, relay)
    assert first.status == 303, first
    before = tenant.causes()
    thief = tenant.browser()
    second = thief.post_acs(value, relay)
    assert second.status == 403 and second.headers["content-type"] == PROBLEM, second
    assert SESSION_COOKIE not in thief.jar
    after = tenant.causes()
    assert after[0] == "replayed" and len(after) == len(before) + 1


def test_a_response_posted_from_another_browser_is_refused_login_csrf(tenant, channels):
    """An insider starts a sign-in, keeps the IdP's response and has a victim's browser post
    it (a form on another site): the victim's browser lacks the binding cookie set with the
    request, so it is refused and signs nobody in; the insider's own browser still can."""
    email = tenant.email()
    create_user(channels, tenant.slug, "member", email=email)
    insider = tenant.browser()
    start = tenant.start(insider)
    binding = [h for h in start.set_cookies if h.startswith("__Host-ontrack_saml=")]
    assert len(binding) == 1
    attrs = {a.strip().lower() for a in binding[0].split(";")[1:]}
    assert {"httponly", "path=/", "samesite=none", "secure"} <= attrs
    assert not [a for a in attrs if a.startswith("domain")]
    _, value, relay = idp_answers(tenant.idp, start.headers["location"], person(email))
    victim = tenant.browser()
    refused = victim.post_acs(value, relay)
    assert refused.status == 403 and SESSION_COOKIE not in victim.jar, refused
    assert tenant.causes()[0] == "other_browser"
    assert insider.post_acs(value, relay).status == 303  # nothing was used up


# -- hostile input ------------------------------------------------------------------------------

XXE = (
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x"'
    ' Version="2.0" IssueInstant="2024-01-01T00:00:00Z">&x;</samlp:Response>'
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + ']><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&lol9;'
    "</samlp:Response>"
)
PI = (
    '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">'
    '<?xml-stylesheet href="http://evil.example/x.xsl"?></samlp:Response>'
)


def _commented_name_id(tenant: Tenant) -> str:
    """A properly signed answer to a request we issued, for ann@<domain>.evil.example, with a
    comment slipped into the NameID (the signature still verifies: exclusive c14n drops
    comments), so a parser that reads only the first text node would see ann@<domain>."""
    start = tenant.start(tenant.browser())
    request, _, _ = authn_request(start.headers["location"])
    evil = f"ann@{tenant.domain}.evil.example"
    xml = tenant.idp.response(
        sp_entity_id=tenant.sp.entity_id,
        acs_url=tenant.sp.acs_url,
        in_response_to=request.get("ID"),
        name_id=evil,
        attributes={EMAIL_ATTRIBUTE: [f"ann@{tenant.domain}"]},
    )
    assert xml.count(f">{evil}<") == 1
    return encode(xml.replace(f">{evil}<", f">ann@{tenant.domain}<!---->.evil.example<"))


HOSTILE = {
    "xxe": (lambda t: encode(XXE), "dtd"),
    "billion laughs": (lambda t: encode(LAUGHS), "dtd"),
    "comment in NameID": (_commented_name_id, "comment"),
    "processing instruction": (lambda t: encode(PI), None),
    "not base64": (lambda t: "%%% not base64 at all %%%", "not_base64"),
    "base64 of not XML": (lambda t: encode("this is not XML <"), None),
    "another root": (lambda t: encode('<html xmlns="urn:x"/>'), None),
    "huge": (lambda t: "A" * (acs.MAX_RESPONSE_CHARS + 4), "too_large"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_xml_is_a_400_problem_never_a_500(tenant, case):
    make, cause = HOSTILE[case]
    value = make(tenant)
    before = tenant.causes()
    r = tenant.browser().post_acs(value)
    assert r.status == 400, (case, r.status, r.body[:300])
    assert r.headers["content-type"] == PROBLEM, r.headers
    assert r.json()["detail"] == gateway_saml.SSO_REFUSED
    assert b"passwd" not in r.body and b"lol" not in r.body
    causes = tenant.causes()
    assert len(causes) == len(before) + 1
    if cause is not None:
        assert causes[0] == cause, causes[:3]
    # A browser posting it gets the error page, still 400.
    page = tenant.browser().post_acs(value, accept=BROWSER_ACCEPT)
    assert page.status == 400 and page.headers["content-type"].startswith("text/html"), page


def test_a_body_over_the_forms_cap_is_refused_before_identity_sees_it(tenant):
    before = tenant.causes()
    value = "A" * (gateway_saml.ACS_MAX_BYTES + 1)
    r = tenant.browser().post_acs(value)
    assert r.status == 413 and r.headers["content-type"] == PROBLEM, r
    assert tenant.causes() == before


# -- where the browser goes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_path",
    [
        "//evil.example",
        "https://evil.example",
        "https://evil.example/assets",
        "/\\evil.example",
        "/%2F/evil.example",
        "javascript:alert(1)",
    ],
)
def test_next_off_this_host_sends_the_browser_home(jit_tenant, next_path):
    r = jit_tenant.sign_in(jit_tenant.browser(), person(jit_tenant.email()), next_path)
    assert r.status == 303, r
    assert r.headers["location"] == "/"


def test_next_on_this_host_is_kept_with_its_query(jit_tenant):
    r = jit_tenant.sign_in(jit_tenant.browser(), person(jit_tenant.email()), "/assets?page=2")
    assert r.status == 303 and r.headers["location"] == "/assets?page=2", r


# -- forwarded headers change nothing -----------------------------------------------------------


def _forwarded_round(t: Tenant, b: Browser, user: User) -> Reply:
    """Login, metadata and ACS with forwarded headers claiming https://evil.example: every
    URL stays the canonical one, and a response made for evil.example is refused."""
    start = t.start(b)
    request, _, _ = authn_request(start.headers["location"])
    assert request.get("AssertionConsumerServiceURL") == t.sp.acs_url
    issuer = request.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
    assert issuer.text == t.sp.entity_id
    metadata = b.send("GET", "/auth/saml/metadata")
    assert metadata.status == 200, metadata
    assert f'Location="{t.sp.acs_url}"' in metadata.body.decode()
    assert f'entityID="{t.sp.entity_id}"' in metadata.body.decode()
    assert b"evil" not in metadata.body
    admin = raw(
        b.port,
        request_bytes(
            "GET",
            "/admin/api/v1/sso/saml",
            b.host,
            [*b.extra, ("Authorization", f"Bearer {t.admin}")],
            close=True,
        ),
        source=b.source,
    )
    assert admin.status == 200 and admin.json()["acs_url"] == t.sp.acs_url, admin

    # An assertion for evil.example's ACS, audience and destination, answering our request.
    evil = rules.SpEndpoints.from_origin("https://evil.example")
    before = t.causes()
    forged = t.idp.encoded(
        sp_entity_id=evil.entity_id,
        acs_url=evil.acs_url,
        in_response_to=request.get("ID"),
        name_id=user.name_id,
        attributes=dict(user.attributes),
    )
    refused = b.post_acs(forged)
    assert refused.status == 403, refused
    assert len(t.causes()) == len(before) + 1
    # The real answer (to a new request: a refused response may have used the first).
    return t.sign_in(b, user)


def test_forwarded_host_from_an_untrusted_peer_changes_nothing(tenant, channels):
    email = tenant.email()
    create_user(channels, tenant.slug, "member", email=email)
    b = tenant.browser(headers=[*FORWARDED, ("X-Forwarded-For", "198.51.100.7")])
    r = _forwarded_round(tenant, b, person(email))
    assert r.status == 303 and r.headers["location"] == "/assets", r
    _, attrs = cookie_attributes(r)
    assert not [a for a in attrs if a.startswith("domain")]  # not the forwarded host's
    me = tenant.who(b)
    assert me["user"]["email"] == email
    assert me["client_address"] == b.source  # the peer is not a proxy: XFF is ignored too


PROXY = "127.0.99.1"


@pytest.fixture(scope="module")
def proxied(system, gateway, tmp_path_factory):
    """A second gateway behind a trusted proxy (PROXY), serving the same public origin as
    the stack's gateway (its public port), as an instance behind a load balancer does."""
    with extra_gateway(
        system,
        "gateway-saml-proxied",
        tmp_path_factory.mktemp("saml-proxied"),
        ONTRACK_GATEWAY_WORKERS="1",
        ONTRACK_GATEWAY_TRUSTED_PROXIES=f"{PROXY}/32",
        ONTRACK_GATEWAY_PUBLIC_PORT=str(gateway.port),
    ) as port:
        yield port


def test_forwarded_host_from_a_trusted_proxy_changes_nothing(tenant, channels, proxied):
    """Behind a trusted proxy the right-most X-Forwarded-Host is the host the client asked
    for (it routes the request); what a client wrote left of it is ignored, and neither
    moves the ACS URL, Destination or Audience off the canonical origin."""
    email = tenant.email()
    create_user(channels, tenant.slug, "member", email=email)
    public = tenant.gateway.host(tenant.slug)
    b = Browser(
        proxied,
        public,
        source=PROXY,
        headers=[
            ("X-Forwarded-Host", f"evil.example, {public}"),  # the client's, then the proxy's
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Port", "443"),
            ("Forwarded", "host=evil.example;proto=https"),
            ("X-Forwarded-For", "198.51.100.7"),
        ],
    )
    r = _forwarded_round(tenant, b, person(email))
    assert r.status == 303 and r.headers["location"] == "/assets", r
    _, attrs = cookie_attributes(r)
    # The cookie stays host-only whatever the proxy forwards (Secure comes from the settings).
    assert not [a for a in attrs if a.startswith("domain")]
    me = eventually(lambda: (w := b.send("GET", "/api/v1/session")).status == 200 and w.json())
    assert me["user"]["email"] == email
    # The proxy is trusted (its client address is believed), yet the host is not moved.
    assert me["client_address"] == "198.51.100.7"
    # A proxy forwarding only evil.example reaches no tenant at all.
    lost = Browser(proxied, public, source=PROXY, headers=[("X-Forwarded-Host", "evil.example")])
    assert lost.send("GET", "/auth/saml/login?next=/").status == 404


# -- MFA evidence and step-up (issue 13) ------------------------------------------------------


def _json(b: Browser, method: str, path: str, body=None) -> Reply:
    """The front end's unsafe JSON request with the session's CSRF token."""
    csrf = b.send("GET", "/api/v1/session").json()["csrf_token"]
    headers = [("Origin", f"http://{b.host}"), ("X-CSRF-Token", csrf)]
    data = b""
    if body is not None:
        headers.append(("Content-Type", "application/json"))
        data = json.dumps(body).encode()
    return b.send(method, path, headers, data)


def test_entra_mfa_evidence_passes_each_policy_and_its_absence_steps_up_to_totp(
    gateway, channels, idp
):
    t = Tenant(gateway, channels, idp, jit=False)
    admin_email, member_email = t.email("boss"), t.email("staff")
    create_user(channels, t.slug, "admin", email=admin_email)
    create_user(channels, t.slug, "member", email=member_email)

    def signed_in(email: str, authn_class: str) -> tuple[Browser, dict]:
        b = t.browser()
        u = person(email)
        u.authn_class = authn_class
        r = t.sign_in(b, u)
        assert r.status == 303, r
        return b, t.who(b)

    def stage(email: str, authn_class: str) -> tuple[str, str]:
        me = signed_in(email, authn_class)[1]
        return me["stage"], me["mfa_source"]

    # off: nothing is held; the IdP's evidence is recorded all the same.
    assert stage(admin_email, PASSWORD_PROTECTED) == ("full", "none")
    assert stage(admin_email, ENTRA_MFA) == ("full", "idp")
    # admins: the admin without evidence is held (no factor yet: enrolment), the member not.
    assert t.api("PUT", "/admin/api/v1/signin-policy", {"mfa_policy": "admins"}).status == 200
    assert stage(member_email, PASSWORD_PROTECTED) == ("full", "none")
    assert stage(admin_email, PASSWORD_PROTECTED) == ("enrol", "none")
    assert stage(admin_email, ENTRA_MFA) == ("full", "idp")
    # everyone: the member too.
    assert t.api("PUT", "/admin/api/v1/signin-policy", {"mfa_policy": "everyone"}).status == 200
    assert stage(member_email, PASSWORD_PROTECTED) == ("enrol", "none")
    assert stage(member_email, ENTRA_MFA) == ("full", "idp")

    # The admin sets up TOTP; a sign-in without evidence now steps up to it.
    b, _ = signed_in(admin_email, ENTRA_MFA)
    secret = _json(b, "POST", "/api/v1/mfa/totp").json()["secret"]
    code = pyotp.TOTP(secret).now()
    assert _json(b, "POST", "/api/v1/mfa/totp/confirm", {"code": code}).status == 200
    held, me = signed_in(admin_email, PASSWORD_PROTECTED)
    assert me["stage"] == "step_up"
    assert held.send("GET", "/api/v1/users").status == 403
    later = pyotp.TOTP(secret).at(time.time() + 30)
    done = _json(held, "POST", "/api/v1/mfa/verify", {"code": later})
    assert done.status == 200, done
    me = t.who(held)
    assert (me["stage"], me["mfa_source"], me["factor"]) == ("full", "local", "totp")

    # The tenant's own list: nothing counts from this IdP (an empty list).
    policy = t.api("PUT", "/admin/api/v1/signin-policy", {"mfa_evidence": {"saml": []}})
    assert policy.status == 200 and policy.json()["mfa_evidence_effective"]["saml"] == []
    assert stage(admin_email, ENTRA_MFA) == ("step_up", "none")
    steps = [e["new"]["factor"] for e in t.audit("mfa.step_up")]
    assert steps == ["totp"]
