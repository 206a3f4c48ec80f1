"""The sign-in pages' renderer and pre-session form tokens (gateway/pages)."""

from __future__ import annotations

import base64
import hashlib
import re

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.gateway.pages import form_token
from ontrackio.gateway.pages.render import (
    content_security_policy,
    error_page,
    page,
    script_text,
    style,
)
from tests.unit.gateway.strategies import PROPERTY

KEY = form_token.derive_key(b"k" * 32)
NOW = 1_800_000_000.0


def _signin(**kw):
    args = dict(
        title="Sign in",
        methods=[],
        password_allowed=True,
        break_glass_link="",
        form_token="t",
        next="/",
        email="",
    )
    args.update(kw)
    return page("signin", **args)


def test_every_value_is_escaped_and_the_page_has_lang_labels_and_a_heading():
    r = _signin(email='"><script>alert(1)</script>', methods=[("<b>Okta</b>", "/a?x=1&y=<")])
    ours = f"<script>{script_text()}</script>"  # the passkey button's, once
    assert r.body.decode().count(ours) == 1
    html = r.body.decode().replace(ours, "")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>Okta</b>" not in html and "&lt;b&gt;Okta&lt;/b&gt;" in html
    assert 'href="/a?x=1&amp;y=&lt;"' in html
    assert '<html lang="en">' in html and "<h1>Sign in</h1>" in html
    for field in ("email", "password"):
        assert f'<label for="{field}">' in html and f'id="{field}"' in html
    assert "<script" not in html.lower()


def test_errors_are_summarised_at_the_top_and_linked_to_their_field():
    html = _signin(errors=[("email", "The email or password is not right.")]).body.decode()
    assert 'role="alert"' in html
    assert '<a href="#email">The email or password is not right.</a>' in html
    assert "<title>Error: Sign in" in html
    assert html.index("error-summary") < html.index("<form")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_the_page_allows_its_own_style_and_script_by_hash_and_nothing_else():
    r = _signin()
    csp = r.headers["content-security-policy"]
    assert csp == content_security_policy(script=True)
    assert f"style-src 'sha256-{_sha256(style())}'" in csp and "default-src 'none'" in csp
    assert f"script-src 'sha256-{_sha256(script_text())}'" in csp and "connect-src 'self'" in csp
    assert "unsafe" not in csp and "img-src" not in csp and "form-action 'self'" in csp
    assert f"<style>{style()}</style>" in r.body.decode()
    assert f"<script>{script_text()}</script>" in r.body.decode()
    assert r.headers["cache-control"] == "no-store"


def test_a_page_without_a_passkey_button_has_no_script_and_keeps_the_plain_policy():
    r = error_page(404, "x")
    csp = r.headers["content-security-policy"]
    assert csp == content_security_policy()
    assert csp == (
        f"default-src 'none'; style-src 'sha256-{_sha256(style())}'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    )
    assert "<script" not in r.body.decode()
    without = _signin(script=False)
    assert without.headers["content-security-policy"] == csp
    assert "<script" not in without.body.decode() and "passkey" not in without.body.decode()


def test_only_the_qr_code_page_allows_data_images():
    assert "img-src data:" in content_security_policy(script=True, data_images=True)
    assert "img-src" not in content_security_policy(script=True)


def test_pages_let_browsers_send_our_origin_with_their_forms_and_nothing_elsewhere():
    # Under no-referrer, browsers post Origin: null, which the same-origin check refuses
    # (tests/e2e/test_browser_signin.py shows it in Chromium).
    r = _signin()
    assert r.headers["referrer-policy"] == "same-origin"
    assert '<meta name="referrer" content="same-origin">' in r.body.decode()
    assert error_page(403, "x").headers["referrer-policy"] == "same-origin"


def test_without_a_password_method_the_form_is_not_shown_but_sso_buttons_are():
    html = _signin(password_allowed=False, methods=[("Microsoft", "/auth/oidc/entra/login")])
    text = html.body.decode()
    assert "<form" not in text and 'href="/auth/oidc/entra/login"' in text


def test_under_sso_required_the_page_links_the_break_glass_form_instead_of_showing_it():
    html = _signin(
        password_allowed=False,
        methods=[("SAML", "/auth/saml/login")],
        break_glass_link="/signin?break_glass=1&next=%2Fx",
    ).body.decode()
    assert "<form" not in html and 'href="/signin?break_glass=1&amp;next=%2Fx"' in html


def test_the_error_page_keeps_its_status_and_links_back_to_sign_in():
    r = error_page(404, "This invitation link is not valid any more.")
    assert r.status_code == 404 and r.media_type == "text/html"
    assert 'href="/signin"' in r.body.decode()


def test_a_form_token_is_valid_for_its_nonce_and_tenant_within_its_age():
    nonce = form_token.new_nonce()
    t = form_token.token(KEY, "acme", nonce, now=NOW)
    assert form_token.valid(KEY, "acme", nonce, t, now=NOW)
    assert form_token.valid(KEY, "acme", nonce, t, now=NOW + form_token.MAX_AGE_SECONDS)
    assert not form_token.valid(KEY, "acme", nonce, t, now=NOW + form_token.MAX_AGE_SECONDS + 1)
    assert not form_token.valid(KEY, "other", nonce, t, now=NOW)
    assert not form_token.valid(KEY, "acme", form_token.new_nonce(), t, now=NOW)
    assert not form_token.valid(form_token.derive_key(b"j" * 32), "acme", nonce, t, now=NOW)
    assert not form_token.valid(KEY, "acme", None, t, now=NOW)
    assert not form_token.valid(KEY, "acme", nonce, None, now=NOW)


def test_a_token_from_the_future_is_refused():
    nonce = form_token.new_nonce()
    t = form_token.token(KEY, "acme", nonce, now=NOW + 3600)
    assert not form_token.valid(KEY, "acme", nonce, t, now=NOW)


def test_the_cookie_is_read_once_and_refused_when_sent_twice_or_malformed():
    nonce = form_token.new_nonce()
    assert form_token.cookie_nonce([f"a=1; {form_token.COOKIE}={nonce}; b=2"]) == nonce
    twice = [f"{form_token.COOKIE}={nonce}", f"{form_token.COOKIE}={form_token.new_nonce()}"]
    assert form_token.cookie_nonce(twice) is None
    assert form_token.cookie_nonce(["a=1"]) is None
    # not one of ours: a new one is issued rather than failing every form until it expires
    assert form_token.cookie_nonce([f"{form_token.COOKIE}=abc"]) is None
    assert form_token.cookie_nonce([f"{form_token.COOKIE}="]) is None


@PROPERTY
@given(st.text(max_size=80), st.text(max_size=80))
@example("A" * 22, "1800000000." + "A" * 43)
def test_any_presented_field_and_cookie_is_refused_unless_made_here(nonce, presented):
    """No text but a token this key made for this nonce passes, and nothing raises."""
    ok = form_token.valid(KEY, "acme", nonce, presented, now=NOW)
    made = re.fullmatch(r"[A-Za-z0-9_-]{22}", nonce) and presented == form_token.token(
        KEY,
        "acme",
        nonce,
        now=float(presented.partition(".")[0] or 0)
        if presented.partition(".")[0].isdigit() and presented.partition(".")[0].isascii()
        else 0,
    )
    assert ok == bool(made and NOW - form_token.MAX_AGE_SECONDS <= int(presented.split(".")[0]))
