"""Invitation link tokens: signed, expiring, single use (the single use is the store's).
Pure: no I/O.

A token reads ``<payload>.<mac>`` in URL-safe base64 without padding. The payload is the
invitation id (16 bytes), its expiry (8 bytes, Unix seconds, big-endian) and a random
secret (16 bytes); the MAC is HMAC-SHA256 under a key derived from ``token_hash_key`` for
invitations only, over the tenant's slug and the payload, cut to 16 bytes. So a forged,
altered, expired or other tenant's token is refused before any database look-up
(``verify``), and the database keeps only ``secret_hash`` (a keyed hash of id and secret),
never the token: whoever reads the database cannot rebuild a link. Every comparison is
constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

_ID_BYTES, _EXP_BYTES, _SECRET_BYTES, _MAC_BYTES = 16, 8, 16, 16
_PAYLOAD_BYTES = _ID_BYTES + _EXP_BYTES + _SECRET_BYTES
# 40 bytes -> 54 characters, 16 -> 22, and the dot.
TOKEN_CHARS = 54 + 1 + 22
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{54}\.[A-Za-z0-9_-]{22}\Z")
_PURPOSE = b"ontrack invitation link v1"
# How long a link is good for, unless the caller says otherwise.
DEFAULT_TTL_SECONDS = 7 * 24 * 3600
MAX_TTL_SECONDS = 30 * 24 * 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(token_hash_key: bytes) -> bytes:
    """The invitation key: another purpose than API tokens and sessions under the same key."""
    return hmac.new(token_hash_key, _PURPOSE, hashlib.sha256).digest()


def _mac(key: bytes, tenant: str, payload: bytes) -> bytes:
    return hmac.new(key, tenant.encode() + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def secret_hash(key: bytes, invitation_id: uuid.UUID, secret: bytes) -> bytes:
    """What the database keeps of a token."""
    return hmac.new(key, b"stored:" + invitation_id.bytes + secret, hashlib.sha256).digest()


@dataclass(frozen=True)
class Issued:
    invitation_id: uuid.UUID
    expires_at: datetime
    secret_hash: bytes
    token: str  # the link's secret, mailed and never stored


@dataclass(frozen=True)
class Presented:
    """A token whose signature and expiry were checked."""

    invitation_id: uuid.UUID
    expires_at: datetime
    secret: bytes


def issue(key: bytes, tenant: str, now: datetime, ttl_seconds: int) -> Issued:
    invitation_id = uuid.uuid4()
    expires = int(now.timestamp()) + ttl_seconds
    secret = secrets.token_bytes(_SECRET_BYTES)
    payload = invitation_id.bytes + expires.to_bytes(_EXP_BYTES, "big") + secret
    token = f"{_b64(payload)}.{_b64(_mac(key, tenant, payload))}"
    return Issued(
        invitation_id,
        datetime.fromtimestamp(expires, UTC),
        secret_hash(key, invitation_id, secret),
        token,
    )


def verify(key: bytes, tenant: str, token: str, now: datetime) -> Presented | None:
    """The token's parts if it is well formed, signed for ``tenant`` and not expired at
    ``now``; None otherwise (which of these failed is nobody's business)."""
    if len(token) != TOKEN_CHARS or not _TOKEN_RE.match(token):
        return None
    encoded_payload, encoded_mac = token.split(".")
    try:
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (binascii.Error, ValueError):
        return None
    if len(payload) != _PAYLOAD_BYTES or len(mac) != _MAC_BYTES:
        return None
    # Base64 has several spellings of one byte string (unused low bits); only ours counts.
    if _b64(payload) != encoded_payload or _b64(mac) != encoded_mac:
        return None
    if not hmac.compare_digest(_mac(key, tenant, payload), mac):
        return None
    expires = int.from_bytes(payload[_ID_BYTES : _ID_BYTES + _EXP_BYTES], "big")
    if expires <= now.timestamp():
        return None
    return Presented(
        uuid.UUID(bytes=payload[:_ID_BYTES]),
        datetime.fromtimestamp(expires, UTC),
        payload[_ID_BYTES + _EXP_BYTES :],
    )


def matches(key: bytes, presented: Presented, stored_hash: bytes) -> bool:
    return hmac.compare_digest(
        secret_hash(key, presented.invitation_id, presented.secret), stored_hash
    )
