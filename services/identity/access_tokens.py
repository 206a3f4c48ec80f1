"""API token rules shared by identity (which issues tokens) and the gateway (which checks them).

A token reads ``otk_<id>_<secret>``. The id is 16 random hex digits followed by 8 hex digits
of a keyed checksum, so a forged or mistyped id is refused by anyone holding the key, with no
database look-up. The secret is 32 random bytes (URL-safe base64); only its keyed hash
(HMAC-SHA256 of ``id:secret`` under ``token_hash_key``) is stored. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ontrackio.core.errors import InvalidArgument

PREFIX = "otk_"
SCOPES = ("api:read", "api:write", "admin", "scim")
MAX_CIDRS = 100
MAX_NAME = 200
MAX_EXPIRY_SECONDS = 5 * 365 * 24 * 3600
_ID_RANDOM_HEX = 16
_ID_CHECK_HEX = 8
ID_RE = re.compile(rf"[0-9a-f]{{{_ID_RANDOM_HEX + _ID_CHECK_HEX}}}\Z")
# token_urlsafe(32) gives 43 characters of [A-Za-z0-9_-].
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}\Z")
MAX_TOKEN_CHARS = len(PREFIX) + _ID_RANDOM_HEX + _ID_CHECK_HEX + 1 + 43


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


def issue(key: bytes) -> Issued:
    token_id = new_token_id(key)
    secret = secrets.token_urlsafe(32)
    return Issued(token_id, hash_secret(key, token_id, secret), f"{PREFIX}{token_id}_{secret}")


def split_bearer(bearer: str) -> tuple[str, str] | None:
    """(id, secret) of a syntactically valid token, else None. Cheap; checks no key."""
    if len(bearer) != MAX_TOKEN_CHARS or not bearer.startswith(PREFIX):
        return None
    token_id, sep, secret = bearer[len(PREFIX) :].partition("_")
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
    """Normalised CIDRs (a bare address is /32 or /128; IPv4-mapped IPv6 becomes IPv4).

    Raises InvalidToken naming every entry that is not a CIDR with zero host bits.
    """
    if len(values) > MAX_CIDRS:
        raise InvalidToken(f"at most {MAX_CIDRS} CIDRs")
    out: list[str] = []
    bad: list[str] = []
    for value in values:
        entry = value.strip() if isinstance(value, str) else ""
        try:
            if not entry:
                raise ValueError("empty")
            net = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            bad.append(repr(value))
            continue
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
            mapped = net.network_address.ipv4_mapped
            if mapped is not None:
                net = ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
        if str(net) not in out:
            out.append(str(net))
    if bad:
        raise InvalidToken(f"invalid CIDR(s): {', '.join(bad)} (expected e.g. 192.0.2.0/24)")
    return out


def validate_name(name: str) -> str:
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise InvalidToken(f"name must be at most {MAX_NAME} characters")
    return name


def validate_expiry(seconds: int) -> int | None:
    if seconds < 0 or seconds > MAX_EXPIRY_SECONDS:
        raise InvalidToken(f"expires_in_seconds must be 0 (never) to {MAX_EXPIRY_SECONDS}")
    return seconds or None


def address_allowed(address: str, cidrs: list[str]) -> bool:
    """True when ``address`` (unmapped) is inside one of ``cidrs``; an empty list allows all."""
    if not cidrs:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(c) for c in cidrs)


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and now >= expires_at
