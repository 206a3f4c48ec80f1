"""Time-based one-time passwords (TOTP, RFC 6238) for identity's MFA. Pure: no I/O.

A user's secret is ``SECRET_BYTES`` (20, 160 bits: RFC 4226 section 4, R6) of ``secrets``
randomness, spelled in base32 (RFC 4648) without padding, as authenticator apps read it. The
apps are given it as an ``otpauth://totp/`` URI (Google's Key Uri Format, which pyotp writes)
shown as a QR code; the parameters are every app's defaults: HMAC-SHA-1, ``DIGITS`` (6)
digits, a new code every ``PERIOD`` (30) seconds.

A code is accepted for the time step of ``now`` and ``WINDOW`` (1) step either side, so a
clock that is a little off, or a code typed as it changes, still works (RFC 6238 section
5.2). pyotp does nothing to stop a code being used twice (RFC 6238 section 5.2: "the
verifier MUST NOT accept the second attempt of the OTP"), so ``matching_step`` returns the
step that matched and accepts only a step later than the caller's ``last_step``: the caller
stores the returned step as the user's last accepted step and passes it next time. So a
replayed code, or an older code after a newer one, is refused.

What a user typed goes through ``parse_code`` first: ASCII digits only (a full-width or
Arabic-Indic digit is refused, not normalised), with spaces around and one space or hyphen
grouping allowed (``123 456``, ``123-456``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import unicodedata
from collections.abc import Callable
from io import BytesIO
from typing import Any

import pyotp
import segno

from ontrackio.identity.errors import InvalidTotpCode

PERIOD = 30
DIGITS = 6
# Steps either side of the current one whose codes are accepted too (previous, current, next).
WINDOW = 1
# 160-bit secrets (RFC 4226 section 4, R6); base32 of 20 bytes is 32 characters, no padding.
SECRET_BYTES = 20
ISSUER = "OnTrackio"
MAX_ACCOUNT_LABEL = 200
# Characters a typed code may take before any parsing ("  123 - 456  " and some more).
MAX_CODE_INPUT = 32
# The QR code: error correction level M (15% of the symbol may be lost) or better, 4 pixels a
# module, black on white, with the quiet zone of 4 modules the standard asks for.
QR_ERROR = "m"
QR_SCALE = 4
QR_DARK = "#000"
QR_LIGHT = "#fff"
QR_TITLE = "QR code to add your account to an authenticator app"

_URI_HEAD = "otpauth://totp/"
_SECRET_RE = re.compile(r"[A-Z2-7]+\Z")
# Spaces around the code, and at most one group separator: spaces or a hyphen (spaced or not).
_CODE_RE = re.compile(r" *([0-9]+)(?:(?: +| *- *)([0-9]+))? *")
# Control, format (bidi and zero-width), surrogate, line and paragraph separator characters.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# pyotp's bound on times (10000-01-01 UTC, exclusive); an 8-byte counter is far larger.
_TIME_LIMIT = 253402300800


def new_secret() -> str:
    """A new random secret: base32 (upper case, no padding) of SECRET_BYTES random bytes."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _check_label(value: str, what: str) -> None:
    if not value or len(value) > MAX_ACCOUNT_LABEL:
        raise ValueError(f"the {what} must be 1 to {MAX_ACCOUNT_LABEL} characters")
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in value):
        raise ValueError(f"the {what} must not contain control characters")


def provisioning_uri(secret: str, account: str, *, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/<issuer>:<account>?secret=...&issuer=...`` URI an authenticator
    app enrols ``secret`` from, written by pyotp with this module's parameters.

    The label's issuer and account are percent-encoded (UTF-8) each on its own, ``:`` and
    ``/`` included, so an account holding ``:`` cannot move the issuer:account separator
    (pyotp.parse_uri reads back exactly ``issuer`` and ``account``); the issuer is also the
    ``issuer`` parameter.

    Raises ValueError when ``secret`` is not upper-case base32 without padding of at least
    112 bits (pyotp's minimum; ``new_secret`` gives 160), when ``account`` or ``issuer`` is
    empty, longer than MAX_ACCOUNT_LABEL characters, or holds control, format (bidi,
    zero-width), surrogate or line-separator characters, or when ``issuer`` holds ``:``
    (the Key Uri Format forbids it; ours is a constant).
    """
    if not _SECRET_RE.match(secret):
        raise ValueError("the secret must be upper-case base32 without padding")
    _check_label(account, "account label")
    _check_label(issuer, "issuer")
    if ":" in issuer:
        raise ValueError("the issuer must not contain ':'")
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)  # ValueError: a short secret
    uri = totp.provisioning_uri(name=account, issuer_name=issuer)
    # pyotp quotes the label with urllib's default safe character "/" left as is: encode it
    # too, so the label stays one path segment for every reader.
    label, sep, query = uri[len(_URI_HEAD) :].partition("?")
    return _URI_HEAD + label.replace("/", "%2F") + sep + query


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as a standalone SVG document (no XML declaration), drawn by
    segno: error correction level M or higher (segno raises it when that costs no size),
    QR_SCALE pixels a module, QR_DARK on QR_LIGHT, with a ``<title>`` (QR_TITLE) for screen
    readers. The same ``uri`` always gives the same document.

    Raises ValueError (segno's DataOverflowError) when ``uri`` does not fit in a QR code.
    """
    code = segno.make(uri, error=QR_ERROR, micro=False, boost_error=True)
    out = BytesIO()
    code.save(
        out,
        kind="svg",
        xmldecl=False,
        scale=QR_SCALE,
        dark=QR_DARK,
        light=QR_LIGHT,
        title=QR_TITLE,
        nl=False,
    )
    return out.getvalue().decode("utf-8")


def parse_code(text: str, digits: int = DIGITS) -> str:
    """The code as typed, reduced to its ``digits`` ASCII digits.

    Allowed around them: spaces before and after, and one grouping separator between two
    groups of digits, either spaces or a hyphen (``123456``, ``123 456``, ``123-456``,
    `` 123 - 456 ``). Only ASCII digits count: full-width, Arabic-Indic or any other Unicode
    digit is refused, never normalised. The length is bounded (MAX_CODE_INPUT) before any
    other look at the text.

    Raises InvalidTotpCode (INVALID_ARGUMENT) for anything else; the message never echoes
    the input.
    """
    message = f"A code is {digits} digits, as your authenticator app shows it."
    if not isinstance(text, str) or len(text) > MAX_CODE_INPUT:
        raise InvalidTotpCode(message)
    match = _CODE_RE.fullmatch(text)
    if match is None:
        raise InvalidTotpCode(message)
    code = match.group(1) + (match.group(2) or "")
    if len(code) != digits:
        raise InvalidTotpCode(message)
    return code


def matching_step(
    secret: str,
    code: str,
    now: float,
    *,
    last_step: int | None,
    digits: int = DIGITS,
    digest: Callable[..., Any] = hashlib.sha1,
    period: int = PERIOD,
    window: int = WINDOW,
) -> int | None:
    """The time step whose code is ``code``, if it may be accepted now; else None.

    The candidates are the steps ``floor(now / period) - window`` to ``+ window`` (steps
    before the epoch left out). ``code`` (as ``parse_code`` returns it) is compared with the
    code of every candidate, each in constant time (hmac.compare_digest), so the time taken
    does not tell which step matched. A step counts only when it is later than ``last_step``
    (the user's last accepted step, None before the first): the caller stores the returned
    step as the new last step, so the same code, or an older one, is refused next time.
    When two candidates match (a 1 in 10**digits chance), the later is returned.

    A ``code`` that is not ``digits`` ASCII digits matches nothing: None.

    Raises ValueError when ``secret`` is not base32 of at least 112 bits, ``digits`` is not
    6 to 10, ``period`` is not 1 to 120 (pyotp's bounds), ``window`` is negative, or ``now``
    is not a finite time from the epoch to the year 10000.
    """
    if not (isinstance(now, int | float) and math.isfinite(now) and 0 <= now < _TIME_LIMIT):
        raise ValueError("now must be a Unix time from the epoch to the year 10000")
    if window < 0:
        raise ValueError("window must not be negative")
    totp = pyotp.TOTP(secret, digits=digits, digest=digest, interval=period)
    if not (len(code) == digits and code.isascii() and code.isdigit()):
        return None
    presented = code.encode("ascii")
    current = int(now) // period
    found = None
    for step in range(current - window, current + window + 1):
        if step < 0:
            continue
        same = hmac.compare_digest(totp.generate_otp(step).encode("ascii"), presented)
        if same and (last_step is None or step > last_step):
            found = step
    return found
