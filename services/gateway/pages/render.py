"""Rendering the sign-in pages: jinja2 with autoescaping on for every template, one small
stylesheet inline (allowed by its hash in the page's own Content-Security-Policy, so no
other source can run).

JavaScript only where WebAuthn needs it: the pages named in ``SCRIPT_PAGES`` (or asked for
with ``script=True``) get the one static script ``webauthn.js`` inline, allowed by its own
hash (``script-src 'sha256-…'``) and ``connect-src 'self'`` for its calls to our JSON API;
every other page keeps the policy without any script. A page showing the TOTP QR code (an
``<img>`` of a ``data:`` URI) asks for ``data_images=True`` (``img-src data:``).

``page(name, status, title=…, errors=[(field id, message)], …)`` answers an HTMLResponse;
``errors`` become the error summary at the top, each linked to its field (``#email``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).with_name("templates")
# Not the gateway's usual no-referrer: under it browsers send ``Origin: null`` with a form
# post (Fetch, "serializing a request origin"), which the same-origin check must refuse, so
# no form of these pages could be sent. same-origin sends our own origin to ourselves and
# nothing to any other site (no invitation token or next path leaves in a Referer).
REFERRER_POLICY = "same-origin"
SCRIPT = "webauthn.js"
# Pages with a passkey button: the sign-in page (passwordless), the MFA page (step-up with a
# passkey, or one made at enrolment) and the account's security page (adding one).
SCRIPT_PAGES = frozenset({"signin", "mfa", "security"})
# What a script element's text must never hold: it would end the element, or start the
# "script data escaped" states of the HTML parser.
_NOT_IN_SCRIPT = re.compile(r"</script|<!--|<script", re.IGNORECASE)


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def style() -> str:
    return (TEMPLATES / "style.css").read_text().strip()


@functools.cache
def script_text() -> str:
    """The WebAuthn script's text, exactly as inlined (and hashed)."""
    text = (TEMPLATES / SCRIPT).read_text().strip()
    if _NOT_IN_SCRIPT.search(text):
        raise ValueError(f"{SCRIPT} holds text that would break out of its <script> element")
    return text


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@functools.cache
def content_security_policy(*, script: bool = False, data_images: bool = False) -> str:
    """The page's policy: nothing but its own stylesheet, forms to this origin, no framing;
    with ``script``, the WebAuthn script by hash and fetches to this origin; with
    ``data_images``, ``data:`` images (the QR code)."""
    parts = ["default-src 'none'", f"style-src 'sha256-{_sha256(style())}'"]
    if script:
        parts += [f"script-src 'sha256-{_sha256(script_text())}'", "connect-src 'self'"]
    if data_images:
        parts.append("img-src data:")
    parts += ["form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"]
    return "; ".join(parts)


def page(
    name: str,
    status: int = 200,
    *,
    title: str,
    errors: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    script: bool | None = None,
    data_images: bool = False,
    **context: Any,
) -> HTMLResponse:
    """``script``: inline the WebAuthn script (None: when ``name`` is one of SCRIPT_PAGES);
    ``data_images``: the page shows a ``data:`` image."""
    scripted = name in SCRIPT_PAGES if script is None else script
    html = (
        environment()
        .get_template(f"{name}.html")
        .render(
            title=title,
            errors=list(errors),
            style=style(),
            webauthn_script=Markup(script_text()) if scripted else "",
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
    response.headers["Content-Security-Policy"] = content_security_policy(
        script=scripted, data_images=data_images
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = REFERRER_POLICY
    return response


def error_page(status: int, message: str, *, title: str = "Sign-in problem", **kw: Any):
    """The generic error page (a broken or used link, a form sent from elsewhere, …)."""
    kw.setdefault("link", "/signin")
    kw.setdefault("link_text", "Go to the sign-in page")
    return page("error", status, title=title, message=message, **kw)
