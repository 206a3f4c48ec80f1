"""Rendering the sign-in pages: jinja2 with autoescaping on for every template, one small
stylesheet inline (allowed by its hash in the page's own Content-Security-Policy, so no
script and no other source can run), no JavaScript.

``page(name, status, title=…, errors=[(field id, message)], …)`` answers an HTMLResponse;
``errors`` become the error summary at the top, each linked to its field (``#email``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

TEMPLATES = Path(__file__).with_name("templates")
# Not the gateway's usual no-referrer: under it browsers send ``Origin: null`` with a form
# post (Fetch, "serializing a request origin"), which the same-origin check must refuse, so
# no form of these pages could be sent. same-origin sends our own origin to ourselves and
# nothing to any other site (no invitation token or next path leaves in a Referer).
REFERRER_POLICY = "same-origin"


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
def content_security_policy() -> str:
    digest = base64.b64encode(hashlib.sha256(style().encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    )


def page(
    name: str,
    status: int = 200,
    *,
    title: str,
    errors: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    html = (
        environment()
        .get_template(f"{name}.html")
        .render(title=title, errors=list(errors), style=style(), **context)
    )
    response = HTMLResponse(html, status_code=status, headers=dict(headers or {}))
    response.headers["Content-Security-Policy"] = content_security_policy()
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = REFERRER_POLICY
    return response


def error_page(status: int, message: str, *, title: str = "Sign-in problem", **kw: Any):
    """The generic error page (a broken or used link, a form sent from elsewhere, …)."""
    kw.setdefault("link", "/signin")
    kw.setdefault("link_text", "Go to the sign-in page")
    return page("error", status, title=title, message=message, **kw)
