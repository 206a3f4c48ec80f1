"""API token rules shared by identity (which issues tokens) and the gateway (which checks them).

A token reads ``otk_<id>_<secret>``. The id is 16 random hex digits followed by 8 hex digits
of a keyed checksum, so a forged or mistyped id is refused by anyone holding the key, with no
database look-up. The secret is 32 random bytes (URL-safe base64); only its keyed hash
(HMAC-SHA256 of ``id:secret`` under ``token_hash_key``) is stored.

A token that mints a token (the actor ``token:<id>``) can only hand out a subset of what it
holds itself: its scopes, its lifetime, its client networks (``check_narrower``). Operators
(the CLI, any other actor) are not bound by it. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ontrackio.core import addresses
from ontrackio.core.errors import InvalidArgument
from ontrackio.identity.errors import TokenWidening

IPNetwork = addresses.IPNetwork

PREFIX = "otk_"
SCOPES = ("api:read", "api:write", "admin", "scim", "audit:read")
MAX_CIDRS = 100
MAX_NAME = 200
MAX_EXPIRY_SECONDS = 5 * 365 * 24 * 3600
_ID_RANDOM_HEX = 16
_ID_CHECK_HEX = 8
ID_RE = re.compile(rf"[0-9a-f]{{{_ID_RANDOM_HEX + _ID_CHECK_HEX}}}\Z")
# token_urlsafe(32) gives 43 characters of [A-Za-z0-9_-].
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}\Z")
MAX_TOKEN_CHARS = len(PREFIX) + _ID_RANDOM_HEX + _ID_CHECK_HEX + 1 + 43
# The actor the gateway names for a request authenticated by a token: ``token:<id>``.
TOKEN_ACTOR_PREFIX = "token:"
# What a minted token may not exceed of its minter (TokenWidening.reasons).
WIDER_SCOPES = "scopes"
WIDER_EXPIRY = "expiry"
WIDER_CIDRS = "cidrs"


class InvalidToken(InvalidArgument):
    """A token request is malformed (bad scope, CIDR, expiry or id)."""


def _id_check(key: bytes, random_part: str) -> str:
    return hmac.new(key, b"id:" + random_part.encode(), hashlib.sha256).hexdigest()[:_ID_CHECK_HEX]


def new_token_id(key: bytes) -> str:
    random_part = secrets.token_hex(_ID_RANDOM_HEX // 2)
    return random_part + _id_check(key, random_part)


def id_is_genuine(key: bytes, token_id: str) -> bool:
    """True when ``token_id`` is well formed and carries a valid checksum (constant time)."""
    if not ID_RE.match(token_id):
        return False
    random_part, check = token_id[:_ID_RANDOM_HEX], token_id[_ID_RANDOM_HEX:]
    return hmac.compare_digest(_id_check(key, random_part), check)


def hash_secret(key: bytes, token_id: str, secret: str) -> bytes:
    return hmac.new(key, f"{token_id}:{secret}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Issued:
    token_id: str
    secret_hash: bytes
    bearer: str  # the whole token, shown once


def issue(key: bytes, prefix: str = PREFIX) -> Issued:
    """A new credential ``<prefix><id>_<secret>``: API tokens (``otk_``) and session cookies
    (``ots_``, identity/sessions) share the format, the id checksum and the keyed hash."""
    token_id = new_token_id(key)
    secret = secrets.token_urlsafe(32)
    return Issued(token_id, hash_secret(key, token_id, secret), f"{prefix}{token_id}_{secret}")


def split_bearer(bearer: str, prefix: str = PREFIX) -> tuple[str, str] | None:
    """(id, secret) of a syntactically valid credential, else None. Cheap; checks no key."""
    if len(bearer) != MAX_TOKEN_CHARS - len(PREFIX) + len(prefix) or not bearer.startswith(prefix):
        return None
    token_id, sep, secret = bearer[len(prefix) :].partition("_")
    if not sep or not ID_RE.match(token_id) or not _SECRET_RE.match(secret):
        return None
    return token_id, secret


def secret_matches(key: bytes, token_id: str, secret: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(key, token_id, secret), stored_hash)


def validate_scopes(scopes: list[str]) -> list[str]:
    if not scopes:
        raise InvalidToken(f"at least one scope is needed: {', '.join(SCOPES)}")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise InvalidToken(
            f"unknown scope(s) {', '.join(map(repr, bad))}; known: {', '.join(SCOPES)}"
        )
    return sorted(set(scopes), key=SCOPES.index)


def validate_cidrs(values: list[str]) -> list[str]:
    """Normalised CIDRs, each once (core/addresses.py: a bare address is /32 or /128,
    IPv4-mapped IPv6 becomes IPv4).

    Raises InvalidToken naming every entry that is not a CIDR with zero host bits.
    """
    if len(values) > MAX_CIDRS:
        raise InvalidToken(f"at most {MAX_CIDRS} CIDRs")
    try:
        networks = addresses.parse_cidrs(values)
    except addresses.InvalidCIDRs as exc:
        bad = ", ".join(repr(entry) for entry, _ in exc.invalid)
        raise InvalidToken(f"invalid CIDR(s): {bad} (expected e.g. 192.0.2.0/24)") from None
    return list(dict.fromkeys(str(n) for n in networks))


def validate_name(name: str) -> str:
    """The stripped name; InvalidToken when too long or holding control characters (NUL
    included, which PostgreSQL text cannot store)."""
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise InvalidToken(f"name must be at most {MAX_NAME} characters")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InvalidToken("name must not contain control characters")
    return name


def audit_address(address: str) -> str:
    """``address`` as the audit log keeps it: the normalised IP, else a printable excerpt."""
    ip = addresses.parse_address(address)
    if ip is not None:
        return str(ip)
    return "".join(c if c.isprintable() else "?" for c in address[:64])


def validate_expiry(seconds: int) -> int | None:
    if seconds < 0 or seconds > MAX_EXPIRY_SECONDS:
        raise InvalidToken(f"expires_in_seconds must be 0 (never) to {MAX_EXPIRY_SECONDS}")
    return seconds or None


def address_allowed(address: str, cidrs: list[str]) -> bool:
    """True when ``address`` (unmapped) is inside one of ``cidrs``; an empty list allows all,
    an address that does not parse is refused by any other list."""
    return addresses.is_allowed(addresses.parse_address(address), addresses.parse_cidrs(cidrs))


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and now >= expires_at


def actor_token_id(actor: str) -> str | None:
    """The token id when ``actor`` is a token (``token:<id>``, the id unchecked), else None."""
    return actor[len(TOKEN_ACTOR_PREFIX) :] if actor.startswith(TOKEN_ACTOR_PREFIX) else None


def cidrs_within(cidrs: Iterable[str], parent: Iterable[str]) -> bool:
    """True when every address ``cidrs`` admits is admitted by ``parent`` too, as
    ``address_allowed`` reads both (core/addresses.py, ``networks_within``). Entries must be
    valid CIDRs (``validate_cidrs``)."""
    return addresses.networks_within(addresses.parse_cidrs(cidrs), addresses.parse_cidrs(parent))


def check_narrower(
    *,
    scopes: Iterable[str],
    cidrs: Iterable[str],
    expires_at: datetime | None,
    parent_scopes: Iterable[str],
    parent_cidrs: Iterable[str],
    parent_expires_at: datetime | None,
    now: datetime,
) -> None:
    """Allow a token to mint a token only within its own scopes, lifetime and networks.

    ``expires_at`` None means never; so does ``parent_expires_at``. Returns None when the new
    token is no wider in any respect; raises TokenWidening (PERMISSION_DENIED) naming every
    respect in which it is (``reasons``: WIDER_SCOPES, WIDER_EXPIRY, WIDER_CIDRS).
    """
    reasons: list[str] = []
    problems: list[str] = []
    extra = sorted(set(scopes) - set(parent_scopes), key=lambda s: (s not in SCOPES, s))
    if extra:
        reasons.append(WIDER_SCOPES)
        problems.append(f"scope(s) {', '.join(map(repr, extra))} that it lacks")
    if parent_expires_at is not None and (expires_at is None or expires_at > parent_expires_at):
        reasons.append(WIDER_EXPIRY)
        left = max(0, int((parent_expires_at - now) / timedelta(seconds=1)))
        problems.append(
            f"a lifetime past its own expiry (expires_in_seconds must be 1 to {left})"
            if left
            else "any lifetime (it expires now)"
        )
    if not cidrs_within(cidrs, parent_cidrs):
        reasons.append(WIDER_CIDRS)
        problems.append("client networks outside its own CIDRs")
    if reasons:
        raise TokenWidening(
            "a token cannot mint a token wider than itself: " + "; ".join(problems),
            tuple(reasons),
        )
