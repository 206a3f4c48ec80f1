"""MFA in a real browser: headless Chromium (/usr/bin/chromium, playwright) against the
running stack, with Chromium's virtual WebAuthn authenticator (CDP ``WebAuthn``: CTAP2, an
internal platform authenticator with resident keys and user verification) for passkeys.

- Passkeys: a user signed in with a password adds a passkey on the security page (the page's
  script runs the ceremony through the JSON API and shows the first factor's recovery
  codes), signs out, and signs in again with the passkey alone from the sign-in page's
  "Sign in with a passkey" button (a passwordless, full session: ``method`` passkey,
  ``mfa_source`` local).
- TOTP enrolment: under the ``everyone`` policy a user without a factor who signs in with a
  password is sent to the MFA page, which shows the QR code (an image with alt text) and the
  secret; a wrong code is shown as an error, a right one (pyotp, from the secret on the page)
  brings the ten recovery codes once, and the session is full: a page that needs one opens.
  Signing in again is a step-up, here with one of those recovery codes.

Each page is also checked for the basics (its language, one main heading, labelled fields)
and for the policy it declares: the only script is ours, allowed by its hash, and the browser
reports no Content-Security-Policy violation on any of them (the QR code's ``data:`` image
and the script's fetches included).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator

import pyotp
import pytest

from ontrackio.gateway.pages.render import script_text
from ontrackio.identity.v1 import sessions_pb2 as sspb
from ontrackio.identity.v1 import sessions_pb2_grpc as ssgrpc
from tests.conftest import unique
from tests.e2e.test_browser_signin import (  # noqa: F401 - chromium is a fixture
    PASSWORD,
    chromium,
    invitation_link,
    new_page,
    session_cookie,
    shown_json,
    who_am_i,
)
from tests.e2e.test_gateway_kit import gateway_fixture  # noqa: F401 - fixture
from tests.helpers import create_tenant, md

pytestmark = pytest.mark.e2e

SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(script_text().encode()).digest()).decode()


@pytest.fixture
def tenant(gateway, channels) -> dict:
    slug = unique("bm")
    create_tenant(channels, slug)
    return {"slug": slug, "origin": f"http://{gateway.host(slug)}"}


@pytest.fixture
def csp_reports() -> Iterator[list[str]]:
    """Console messages about Content-Security-Policy violations (a test's pages add them);
    none may be left at the end."""
    seen: list[str] = []
    yield seen
    assert not seen, seen


def browser_page(chromium, csp_reports: list[str], *, javascript: bool = True):  # noqa: F811
    page = new_page(chromium, javascript=javascript)
    page.on(
        "console",
        lambda m: csp_reports.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return page


def virtual_authenticator(page) -> tuple:
    """A CTAP2 platform authenticator with resident keys, user verification always passing
    and presence simulated (no prompt), attached to this page's tab."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def assert_page(page, heading: str, response=None, *, scripted: bool) -> None:
    """Language, one main heading, every visible field labelled; the script (ours, by hash)
    only where passkeys need it."""
    assert page.locator("html").get_attribute("lang") == "en"
    h1 = page.get_by_role("heading", level=1)
    assert h1.count() == 1 and h1.inner_text() == heading, h1.all_inner_texts()
    fields = page.locator("input:not([type=hidden]):visible")
    for i in range(fields.count()):
        field_id = fields.nth(i).get_attribute("id")
        assert field_id and page.locator(f"label[for='{field_id}']").count() == 1, field_id
    scripts = page.locator("script")
    assert scripts.count() == (1 if scripted else 0)
    if response is not None:
        csp = response.headers["content-security-policy"]
        assert (f"script-src '{SCRIPT_HASH}'" in csp) is scripted, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        if scripted:
            assert "connect-src 'self'" in csp


def accept_invitation(page, system, tenant: dict, email: str, lands_on: str = "/") -> None:
    page.goto(invitation_link(system, tenant, email))
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("Type the password again", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Set password and sign in").click()
    page.wait_for_url(f"{tenant['origin']}{lands_on}")


def require_mfa(channels, tenant: dict) -> None:
    """The tenant's MFA policy: everyone, a week to enrol."""
    ssgrpc.SessionServiceStub(channels["identity"]).SetSignInPolicy(
        sspb.SignInPolicy(mfa_policy="everyone", mfa_grace_days=7),
        metadata=md(tenant["slug"]),
        timeout=10,
    )


def sign_out(page, origin: str) -> None:
    page.goto(f"{origin}/signout")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{origin}/signin")
    assert session_cookie(page) is None


def password_sign_in(page, origin: str, email: str, nxt: str):
    """The sign-in page's password form; the answer to its post (after any redirects)."""
    page.goto(f"{origin}/signin?next={nxt}")
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    with page.expect_navigation() as went:
        page.get_by_role("button", name="Sign in", exact=True).click()
    return went.value


# What the script falls back on in a browser without WebAuthn's JSON helpers (older than
# Chromium 129, Firefox 119, Safari 18.4): its own base64url conversions.
WITHOUT_JSON_HELPERS = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""


@pytest.mark.parametrize("helpers", [True, False], ids=["json-helpers", "fallback"])
def test_a_passkey_added_on_the_security_page_signs_in_without_a_password(
    chromium,  # noqa: F811
    system,
    channels,
    tenant,
    csp_reports,
    helpers,
):
    origin = tenant["origin"]
    email = f"{unique('pk')}@example.com"
    page = browser_page(chromium, csp_reports)
    if not helpers:
        page.add_init_script(WITHOUT_JSON_HELPERS)
    cdp, authenticator = virtual_authenticator(page)
    accept_invitation(page, system, tenant, email)
    sign_out(page, origin)
    password_sign_in(page, origin, email, "/account/security")
    page.wait_for_url(f"{origin}/account/security")
    assert who_am_i(page, origin)["method"] == "password"

    # The security page: nothing set up yet; a passkey added through its button.
    response = page.goto(f"{origin}/account/security")
    has_helpers = "typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function'"
    assert page.evaluate(has_helpers) is helpers
    assert_page(page, "Sign-in security", response, scripted=True)
    main = page.locator("main")
    assert "No passkeys yet." in main.inner_text()
    assert page.get_by_role("button", name="Make new recovery codes").count() == 0
    page.get_by_label("Name of the new passkey", exact=True).fill("Test laptop")
    page.get_by_role("button", name="Add a passkey").click()

    # Its first factor: the ten recovery codes, shown once on the page, then on.
    codes = page.get_by_role("heading", name="Save your recovery codes")
    codes.wait_for()
    assert len(page.locator("#new-codes li code").all_inner_texts()) == 10
    assert page.get_by_role("button", name="Add a passkey").count() == 0  # hidden meanwhile
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{origin}/account/security")
    page.wait_for_load_state()
    assert "Test laptop" in main.inner_text()
    assert page.get_by_role("button", name="Remove “Test laptop”").count() == 1
    assert "10 unused codes left." in main.inner_text()
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert [c["isResidentCredential"] for c in stored["credentials"]] == [True]

    # Signed out, back with the passkey alone: a full session, MFA by itself.
    sign_out(page, origin)
    response = page.goto(f"{origin}/signin?next=/api/v1/session")
    assert_page(page, "Sign in", response, scripted=True)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url(f"{origin}/api/v1/session")
    me = shown_json(page)
    assert (me["method"], me["mfa_source"], me["factor"]) == ("passkey", "local", "passkey")
    assert me["stage"] == "full" and me["user"]["email"] == email
    cookie = session_cookie(page)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    # The browser-binding cookie of the passwordless challenge is spent with it.
    assert not [c for c in page.context.cookies() if c["name"] == "__Host-ontrack_webauthn"]

    # Once MFA is required, a password sign-in steps up with the passkey (or a code).
    require_mfa(channels, tenant)
    sign_out(page, origin)
    response = password_sign_in(page, origin, email, "/api/v1/session")
    assert page.url == f"{origin}/signin/mfa?next=%2Fapi%2Fv1%2Fsession", page.url
    assert_page(page, "Confirm it is you", response, scripted=True)
    assert page.get_by_label("Recovery code", exact=True).is_visible()
    assert page.get_by_label("Code from your authenticator app", exact=True).count() == 0
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url(f"{origin}/api/v1/session")
    me = shown_json(page)
    assert (me["method"], me["mfa_source"], me["factor"]) == ("password", "local", "passkey")
    assert me["stage"] == "full"
    page.context.close()


def test_at_enrolment_a_passkey_can_be_created_instead_of_an_app(
    chromium,  # noqa: F811
    system,
    channels,
    tenant,
    csp_reports,
):
    origin = tenant["origin"]
    require_mfa(channels, tenant)
    page = browser_page(chromium, csp_reports)
    virtual_authenticator(page)
    # A new account opens at enrolment: the invitation leads to the MFA page.
    accept_invitation(page, system, tenant, f"{unique('ep')}@example.com", lands_on="/signin/mfa")
    assert_page(page, "Set up a second factor", scripted=True)
    page.get_by_role("button", name="Create a passkey instead").click()
    page.get_by_role("heading", name="Save your recovery codes").wait_for()
    assert len(page.locator("#new-codes li code").all_inner_texts()) == 10
    assert page.get_by_role("button", name="Confirm the code").count() == 0  # hidden meanwhile
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{origin}/")
    me = who_am_i(page, origin)
    assert (me["stage"], me["mfa_source"], me["factor"]) == ("full", "local", "passkey")

    # The security page's forms: an app set up besides (no new codes: not a first factor)
    # and removed again; the last factor kept while MFA is required; new recovery codes.
    page.goto(f"{origin}/account/security")
    main = page.locator("main")
    page.get_by_role("button", name="Set up an authenticator app").click()
    page.wait_for_load_state()
    assert_page(page, "Set up an authenticator app", scripted=True)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code from your authenticator app", exact=True).fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm the code").click()
    page.wait_for_url(f"{origin}/account/security")
    assert "Set up." in main.inner_text()
    page.get_by_role("button", name="Remove the authenticator app").click()
    page.wait_for_url(f"{origin}/account/security")
    assert "Not set up." in main.inner_text()
    page.get_by_role("button", name="Remove “Passkey”").click()
    page.wait_for_load_state()
    alert = page.get_by_role("alert").filter(has_text="There is a problem")
    assert "requires MFA" in alert.inner_text()
    assert alert.get_by_role("link").get_attribute("href") == "#passkeys"
    assert page.get_by_role("button", name="Remove “Passkey”").count() == 1  # still there
    page.get_by_role("button", name="Make new recovery codes").click()
    page.wait_for_load_state()
    assert_page(page, "Save your recovery codes", scripted=False)
    assert "no longer work" in main.inner_text()
    assert len(page.locator("main li code").all_inner_texts()) == 10
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{origin}/account/security")
    assert "10 unused codes left." in main.inner_text()
    page.context.close()


def test_without_javascript_no_passkey_button_is_offered(chromium, tenant, csp_reports):  # noqa: F811
    page = browser_page(chromium, csp_reports, javascript=False)
    page.goto(f"{tenant['origin']}/signin")
    assert page.get_by_role("button", name="Sign in with a passkey").count() == 0
    assert page.get_by_role("button", name="Sign in", exact=True).count() == 1
    page.context.close()


def test_the_everyone_policy_sends_a_user_without_a_factor_to_set_up_totp(
    chromium,  # noqa: F811
    system,
    channels,
    tenant,
    csp_reports,
):
    origin = tenant["origin"]
    email = f"{unique('tp')}@example.com"
    first = browser_page(chromium, csp_reports)
    accept_invitation(first, system, tenant, email)
    first.context.close()
    require_mfa(channels, tenant)

    # A password sign-in is held at enrolment: to the MFA page, and back to next after.
    page = browser_page(chromium, csp_reports)
    response = password_sign_in(page, origin, email, "/account/security")
    assert page.url == f"{origin}/signin/mfa?next=%2Faccount%2Fsecurity", page.url
    assert_page(page, "Set up a second factor", response, scripted=True)
    assert "img-src data:" in response.headers["content-security-policy"]
    main = page.locator("main")
    assert "requires multi-factor authentication" in main.inner_text()
    assert " UTC" in main.locator("p strong").first.inner_text()  # by when (enrol_by)
    first = page.locator("#totp-secret").inner_text()
    assert who_am_i(page, origin)["stage"] == "enrol"
    page.goto(f"{origin}/signin/mfa?next=%2Faccount%2Fsecurity")  # a reload: the same secret
    assert page.locator("#totp-secret").inner_text() == first

    # The QR code: an image of our SVG, with alt text, drawn (the policy lets it load).
    qr = page.get_by_role("img")
    assert qr.count() == 1
    assert "QR code" in (qr.get_attribute("alt") or "")
    src = qr.get_attribute("src") or ""
    assert src.startswith("data:image/svg+xml;base64,")
    assert base64.b64decode(src.split(",", 1)[1]).startswith(b"<svg")
    assert page.evaluate("document.querySelector('main img').naturalWidth") > 0
    assert page.get_by_role("button", name="Create a passkey instead").is_visible()

    # A wrong code: the error, announced and linked to the field; the same QR code again
    # (the app's entry stays good).
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "000001"
    code_field = page.get_by_label("Code from your authenticator app", exact=True)
    code_field.fill(wrong)
    page.get_by_role("button", name="Confirm the code").click()
    page.wait_for_load_state()
    alert = page.get_by_role("alert").filter(has_text="There is a problem")
    assert "not accepted" in alert.inner_text()
    assert alert.get_by_role("link").get_attribute("href") == "#confirm-code"
    assert_page(page, "Set up a second factor", scripted=True)
    assert page.locator("#totp-secret").inner_text().replace(" ", "") == secret

    # The right code (as the app would show it): the recovery codes, once, then on to next.
    page.get_by_label("Code from your authenticator app", exact=True).fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Confirm the code").click()
    page.wait_for_load_state()
    assert_page(page, "Save your recovery codes", scripted=False)
    codes = page.locator("main li code").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url(f"{origin}/account/security")
    assert_page(page, "Sign-in security", scripted=True)
    assert "Your organisation requires multi-factor authentication" in main.inner_text()
    me = who_am_i(page, origin)
    assert (me["stage"], me["mfa_source"], me["factor"]) == ("full", "local", "totp")
    users = page.goto(f"{origin}/api/v1/users")
    assert users is not None and users.status == 200
    page.context.close()

    # Signing in again is a step-up: the app's code or a recovery code (no passkey here).
    again = browser_page(chromium, csp_reports)
    response = password_sign_in(again, origin, email, "/api/v1/session")
    assert again.url == f"{origin}/signin/mfa?next=%2Fapi%2Fv1%2Fsession", again.url
    assert_page(again, "Confirm it is you", response, scripted=True)
    assert again.get_by_label("Code from your authenticator app", exact=True).is_visible()
    assert again.get_by_role("button", name="Use a passkey").count() == 0
    again.get_by_label("Recovery code", exact=True).fill(codes[0].upper())
    again.get_by_role("button", name="Use the recovery code").click()
    again.wait_for_url(f"{origin}/api/v1/session")
    me = shown_json(again)
    assert (me["stage"], me["mfa_source"], me["factor"]) == ("full", "local", "recovery-code")
    assert me["method"] == "password"
    # The app's codes work as well (a later one than the enrolment's: each is used once),
    # and the page's forms need no script.
    third = browser_page(chromium, csp_reports, javascript=False)
    password_sign_in(third, origin, email, "/api/v1/session")
    third.get_by_label("Code from your authenticator app", exact=True).fill(
        pyotp.TOTP(secret).at(time.time() + 30)
    )
    third.get_by_role("button", name="Continue").click()
    third.wait_for_url(f"{origin}/api/v1/session")
    assert shown_json(third)["factor"] == "totp"
    again.context.close()
    third.context.close()
