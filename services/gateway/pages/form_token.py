"""CSRF defence for the forms shown before any session exists (sign-in, invitation).

Two checks, both required on every POST of these forms:

1. Same origin: the ``Origin`` header (or, when a browser sends none, the ``Referer``'s
   origin) is the origin the request was sent to (auth/csrf.py ``origin_ok``).
2. A signed double-submit token: the page sets a random nonce in the cookie
   ``__Host-ontrack_form`` (HttpOnly, SameSite=Strict, path /) and puts
   ``<issued>.<mac>`` in the form, the MAC being HMAC-SHA256 (under a key derived from
   ``token_hash_key`` for this purpose) of the tenant, the nonce and the time issued. A
   site that cannot read the cookie cannot make a matching form field, and a field
   taken from one tenant's page does not pass on another's. A token is good for
   ``MAX_AGE_SECONDS``.

The session's own CSRF token (auth/csrf.py) takes over once signed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

from ontrackio.gateway.auth.cookies import cookie_value

COOKIE = "__Host-ontrack_form"
FIELD = "form_token"
MAX_AGE_SECONDS = 2 * 3600
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{22}\Z")
_TOKEN_RE = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{43})\Z")


def derive_key(token_hash_key: bytes) -> bytes:
    return hmac.new(token_hash_key, b"ontrack pre-session form token v1", hashlib.sha256).digest()


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def _mac(key: bytes, tenant: str, nonce: str, issued: int) -> str:
    msg = f"{tenant}\x00{nonce}\x00{issued}".encode()
    return (
        base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest()).rstrip(b"=").decode()
    )


def token(key: bytes, tenant: str, nonce: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_mac(key, tenant, nonce, issued)}"


def valid(
    key: bytes, tenant: str, nonce: str | None, presented: str | None, now: float | None = None
) -> bool:
    """Whether ``presented`` (the form field) was made for ``nonce`` (the cookie) and this
    tenant, within MAX_AGE_SECONDS (and not in the future)."""
    if not nonce or not presented or not _NONCE_RE.match(nonce):
        return False
    m = _TOKEN_RE.match(presented)
    if m is None:
        return False
    issued = int(m.group(1))
    t = time.time() if now is None else now
    if not (t - MAX_AGE_SECONDS <= issued <= t + 60):
        return False
    return hmac.compare_digest(_mac(key, tenant, nonce, issued), m.group(2))


def cookie_nonce(cookie_headers: list[str]) -> str | None:
    """The form cookie's value when it is one of ours (well formed); None when absent,
    malformed or sent more than once (then a new one is issued)."""
    value = cookie_value(cookie_headers, COOKIE)
    return value if value is not None and _NONCE_RE.fullmatch(value) else None


def set_cookie(response, nonce: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        nonce,
        max_age=MAX_AGE_SECONDS,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
