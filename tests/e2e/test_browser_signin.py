"""Sign-in in a real browser: headless Chromium from the distribution (/usr/bin/chromium)
driven by playwright, against the running stack and its real counterparts.

- SAML: our sign-in page lists the tenant's SAML; its button sends the browser to the
  pysaml2 IdP (devtools/samlidp.py ``serve``), whose page posts the signed response to our
  ACS by itself, as real IdPs' pages do; the browser lands on ``next`` signed in.
- OIDC: the same page lists the tenant's OIDC provider; its button goes to the authlib
  provider (devtools/oidcprovider.py), which approves at once and redirects back to our
  callback with the code; the browser lands on ``next`` signed in.
- Password: an invitation link → the invitation page → a password → signed in; sign-out
  through the sign-out page's form; sign-in again with the password on /signin. Once with
  JavaScript and once without (the pages need none).

What only a browser shows: it keeps our ``__Host-`` cookies on ``<slug>.localhost`` over
http (they are Secure there), hides the session cookie from ``document.cookie``, sends it
back after the IdP's cross-site form post (SameSite=Lax), and sends ``Origin`` with our
forms (under ``Referrer-Policy: no-referrer`` it sends ``Origin: null``, which our CSRF check
refuses: this test found that). Accessibility basics are read from the browser's own
accessibility tree (labels, the page's language, one main heading, the error alert).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from ontrackio.devtools.oidcprovider import Person
from ontrackio.devtools.samlidp import EMAIL_ATTRIBUTE, NAME_ATTRIBUTE, SamlIdP, User
from ontrackio.gateway.api.oidc import BINDING_COOKIE, LABELS
from ontrackio.gateway.api.signin import SAML_LABEL, SIGN_IN_REFUSED
from ontrackio.gateway.auth.session import SESSION_COOKIE
from ontrackio.gateway.pages import form_token
from ontrackio.gateway.pages.render import script_text
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.identity.v1 import sessions_pb2 as sspb
from ontrackio.identity.v1 import sessions_pb2_grpc as ssgrpc
from ontrackio.identity.v1 import signin_pb2 as spb
from ontrackio.identity.v1 import signin_pb2_grpc as sgrpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import gateway_fixture, make_token  # noqa: F401 - fixture
from tests.helpers import create_tenant, md

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "tangerine orbit calliope 7"
STEP_MS = 20_000  # one navigation or action; the stack answers in well under a second


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    """One headless Chromium for the module (playwright never downloads a browser here)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make system-packages`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(chromium, *, javascript: bool = True, requests: list | None = None):
    """A page in a context of its own (its own cookies); ``requests`` gets (method, url) of
    every request the page makes, in order."""
    context = chromium.new_context(java_script_enabled=javascript)
    context.set_default_timeout(STEP_MS)
    page = context.new_page()
    if requests is not None:
        page.on("request", lambda r: requests.append((r.method, r.url)))
    return page


def shown_json(page) -> dict:
    """The JSON document the browser is showing (Chromium renders it in a <pre>)."""
    return json.loads(page.locator("pre").first.inner_text())


def session_cookie(page) -> dict | None:
    found = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(found) <= 1, found
    return found[0] if found else None


def assert_basics(page, heading: str) -> None:
    """The page's language, one main heading, no script but ours: the WebAuthn script on
    the sign-in page (its passkey button), none elsewhere."""
    assert page.locator("html").get_attribute("lang") == "en"
    h1 = page.get_by_role("heading", level=1)
    assert h1.count() == 1 and h1.inner_text() == heading
    expected = [script_text()] if heading == "Sign in" else []
    assert page.locator("script").all_text_contents() == expected


# -- SAML -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saml_idp() -> Iterator[SamlIdP]:
    idp = SamlIdP(f"https://idp.{unique('b')}.e2e.test/metadata")
    try:
        with idp.serve():  # /sso on loopback: takes the redirect, answers the auto-post page
            yield idp
    finally:
        idp.close()


@pytest.fixture(scope="module")
def sso_tenant(gateway, channels, saml_idp, oidc_provider) -> dict:
    """A tenant with SAML and a generic OIDC provider configured, JIT on and its people's
    domain verified."""
    slug = unique("bs")
    domain = f"corp.{slug}.example.com"
    create_tenant(channels, slug, domains=[domain])
    igrpc.TenantServiceStub(channels["identity"]).VerifyDomain(
        ipb.VerifyDomainRequest(slug=slug, domain=domain), timeout=10
    )
    _, admin = make_token(channels, slug)
    r = gateway.call(
        "PUT",
        "/admin/api/v1/sso/saml",
        slug,
        admin,
        {
            "idp_entity_id": saml_idp.entity_id,
            "sso_url": saml_idp.sso_url,
            "certificates": [saml_idp.signer.cert_pem],
            "email_attribute": EMAIL_ATTRIBUTE,
            "name_attribute": NAME_ATTRIBUTE,
        },
    )
    assert r.status == 200, r
    origin = f"http://{gateway.host(slug)}"
    client_id, secret = oidc_provider.register("generic", f"{origin}/auth/oidc/oidc/callback")
    r = gateway.call(
        "PUT",
        "/admin/api/v1/sso/oidc/oidc",
        slug,
        admin,
        {
            "client_id": client_id,
            "client_secret": secret,
            "issuer": oidc_provider.issuer("generic"),
        },
    )
    assert r.status == 200, r
    ssgrpc.SessionServiceStub(channels["identity"]).SetSignInPolicy(
        sspb.SignInPolicy(jit_provisioning=True), metadata=md(slug), timeout=10
    )
    return {"slug": slug, "domain": domain, "origin": origin, "oidc_client": client_id}


def signed_in_cookie(page, origin: str, *, javascript: bool = True) -> dict:
    """The session cookie as the browser keeps it: HttpOnly, SameSite=Lax, Secure (on
    localhost, over http), host-only, Path=/; and not visible to the page's scripts."""
    cookie = session_cookie(page)
    assert cookie is not None and cookie["value"].startswith("ots_")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["secure"]
    assert cookie["path"] == "/" and cookie["domain"] == origin.split("//")[1].split(":")[0]
    if javascript:  # a cookie a script set is read back; the session cookie is not there
        seen = page.evaluate("document.cookie = 'probe=1'; document.cookie")
        assert "probe=1" in seen and SESSION_COOKIE not in seen
    return cookie


def test_the_sign_in_page_lists_the_tenants_sso_choices_in_order(chromium, sso_tenant):
    page = new_page(chromium)
    page.goto(f"{sso_tenant['origin']}/signin?next=/api/v1/session")
    assert_basics(page, "Sign in")
    links = page.get_by_role("list").get_by_role("link")
    assert links.all_inner_texts() == [SAML_LABEL, LABELS["oidc"]]
    assert [links.nth(i).get_attribute("href") for i in range(2)] == [
        "/auth/saml/login?next=%2Fapi%2Fv1%2Fsession",
        "/auth/oidc/oidc/login?next=%2Fapi%2Fv1%2Fsession",
    ]
    # The password stays (break-glass owners), under its own heading.
    assert page.get_by_role("heading", level=2).all_inner_texts() == [
        "Sign in with your organisation",
        "Or sign in with a password",
    ]
    page.context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_saml_sign_in_from_our_page_through_the_idp_to_next(
    chromium, sso_tenant, saml_idp, javascript
):
    origin = sso_tenant["origin"]
    email = f"{unique('p')}@{sso_tenant['domain']}"
    saml_idp.user = User(
        name_id=email, attributes={EMAIL_ATTRIBUTE: [email], NAME_ATTRIBUTE: ["Browser Person"]}
    )
    requests: list[tuple[str, str]] = []
    page = new_page(chromium, javascript=javascript, requests=requests)
    page.goto(f"{origin}/signin?next=/api/v1/session")
    page.get_by_role("link", name=SAML_LABEL).click()
    if not javascript:
        # The IdP's page submits itself by script; without it, it waits for its button.
        page.wait_for_url(saml_idp.sso_url + "?*")
        page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{origin}/api/v1/session")

    # The way it went: our login, the IdP's SSO page, the IdP's form posted to our ACS.
    went = [(m, u.split("?")[0]) for m, u in requests]
    sso = saml_idp.sso_url
    assert went.index(("GET", f"{origin}/auth/saml/login")) < went.index(("GET", sso))
    assert went.index(("GET", sso)) < went.index(("POST", f"{origin}/auth/saml/acs"))
    me = shown_json(page)
    assert me["method"] == "saml" and me["idp"] == saml_idp.entity_id
    assert me["user"]["email"] == email and me["roles"] == ["member"]
    assert me["user_agent"].startswith("Mozilla/")  # the browser's own, as identity recorded it

    signed_in_cookie(page, origin, javascript=javascript)
    page.context.close()


def test_oidc_sign_in_from_our_page_through_the_provider_to_next(
    chromium, sso_tenant, oidc_provider
):
    origin = sso_tenant["origin"]
    email = f"{unique('p')}@{sso_tenant['domain']}"
    oidc_provider.sign_in_as(sso_tenant["oidc_client"], Person(sub=unique("sub"), email=email))
    requests: list[tuple[str, str]] = []
    page = new_page(chromium, requests=requests)
    page.goto(f"{origin}/signin?next=/api/v1/session")
    page.get_by_role("link", name=LABELS["oidc"]).click()
    page.wait_for_url(f"{origin}/api/v1/session")

    # Our login, the provider's authorization endpoint, its redirect to our callback.
    went = [(m, u.split("?")[0]) for m, u in requests]
    authorize = f"{oidc_provider.base_url}/authorize"
    assert went.index(("GET", f"{origin}/auth/oidc/oidc/login")) < went.index(("GET", authorize))
    assert went.index(("GET", authorize)) < went.index(("GET", f"{origin}/auth/oidc/oidc/callback"))
    me = shown_json(page)
    assert me["method"] == "oidc:oidc" and me["idp"] == oidc_provider.issuer("generic")
    assert me["user"]["email"] == email and me["roles"] == ["member"]
    signed_in_cookie(page, origin)
    # The browser-binding cookie (which the callback requires) is spent: cleared after it.
    assert not [c for c in page.context.cookies() if c["name"] == BINDING_COOKIE]
    page.context.close()


# -- password -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_tenant(gateway, channels) -> dict:
    """A tenant with no SSO configured (its sign-in page offers the password only)."""
    slug = unique("bp")
    create_tenant(channels, slug)
    return {"slug": slug, "origin": f"http://{gateway.host(slug)}"}


def invitation_link(system, tenant: dict, email: str) -> str:
    """The link as the CLI gets it (``return_link``: the first owner's invitation)."""
    r = sgrpc.SignInServiceStub(system.channel("identity", "cli")).CreateInvitation(
        spb.CreateInvitationRequest(
            email=email, role="owner", origin=tenant["origin"], return_link=True
        ),
        metadata=(*md(tenant["slug"]), ("x-ontrack-actor", "cli:e2e-browser")),
        timeout=10,
    )
    assert r.link.startswith(tenant["origin"] + "/invite?token="), r
    return r.link


def who_am_i(page, origin: str) -> dict:
    response = page.goto(f"{origin}/api/v1/session")
    assert response is not None and response.status == 200, response
    return shown_json(page)


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_invitation_password_sign_out_and_password_sign_in(
    chromium, system, password_tenant, javascript
):
    origin = password_tenant["origin"]
    email = f"{unique('o')}@example.com"
    page = new_page(chromium, javascript=javascript)

    # The invitation page: labelled fields, the rule described, then signed in.
    page.goto(invitation_link(system, password_tenant, email))
    assert_basics(page, "Choose your password")
    new = page.get_by_label("New password", exact=True)
    assert new.get_attribute("type") == "password"
    assert "At least" in page.locator("#" + new.get_attribute("aria-describedby")).inner_text()
    new.fill(PASSWORD)
    page.get_by_label("Type the password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_load_state()
    assert page.url == f"{origin}/", page.title()  # the invitation's next; else an error page
    me = who_am_i(page, origin)
    assert me["user"]["email"] == email and me["roles"] == ["owner"]
    assert me["method"] == "invitation"

    # Sign out through the page's form: the cookie is gone and the session with it.
    page.goto(f"{origin}/signout")
    assert_basics(page, "Sign out")
    assert email in page.locator("main").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{origin}/signin")
    assert session_cookie(page) is None
    gone = page.goto(f"{origin}/api/v1/session")
    assert gone is not None and gone.status == 401

    # The sign-in page: only the password (no SSO configured), labelled fields.
    page.goto(f"{origin}/signin?next=/api/v1/session")
    assert_basics(page, "Sign in")
    assert page.get_by_role("link").count() == 0  # no SSO buttons
    email_field = page.get_by_label("Email address", exact=True)
    password_field = page.get_by_label("Password", exact=True)
    assert email_field.get_attribute("type") == "email"
    assert password_field.get_attribute("type") == "password"

    # A wrong password: one message, announced as an alert, linked to the field.
    email_field.fill(email)
    password_field.fill(PASSWORD + "x")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_load_state()
    alert = page.get_by_role("alert")
    assert SIGN_IN_REFUSED in alert.inner_text()
    assert alert.get_by_role("link").get_attribute("href") == "#email"
    assert session_cookie(page) is None

    # The right one: signed in, sent on to next.
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{origin}/api/v1/session")
    me = shown_json(page)
    assert me["method"] == "password" and me["user"]["email"] == email
    cookie = session_cookie(page)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    # The pre-session form cookie was kept too (a __Host- cookie over http on localhost).
    assert any(c["name"] == form_token.COOKIE for c in page.context.cookies())
    page.context.close()
