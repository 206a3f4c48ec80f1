"""Session rules shared by identity (which opens sessions) and the gateway (which checks
them). Pure: no I/O.

The cookie value reads ``ots_<id>_<secret>``, the API token format (access_tokens) with its
own prefix: a forged id fails its keyed checksum without a database look-up, and only the
keyed hash of the secret is stored. A session ends at the first of: its absolute expiry
(fixed at sign-in), its idle expiry (moved on by use, ``touch``), revocation, or the user's
deactivation. The CSRF token of a session is derived from its id under a key of its own
(``csrf_token``), so the gateway checks it with no state, and it changes with the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from ontrackio.core.errors import InvalidArgument
from ontrackio.identity import access_tokens

PREFIX = "ots_"
COOKIE_CHARS = access_tokens.MAX_TOKEN_CHARS  # the same length as a token: same prefix size
# Bounds of the tenant's timeouts; defaults (8 h idle, 24 h absolute) are in the migration.
MIN_IDLE_SECONDS = 5 * 60
MAX_IDLE_SECONDS = 7 * 24 * 3600
MIN_ABSOLUTE_SECONDS = 15 * 60
MAX_ABSOLUTE_SECONDS = 30 * 24 * 3600
# A session is touched (idle expiry moved on) at most this often; the idle timeout is
# therefore exact to within this.
TOUCH_SECONDS = 60
USER_ACTOR_PREFIX = "user:"
# Why a session ended (SessionsRevoked.reason, sessions.revoked_reason).
ENDED_LOGOUT = "logout"
ENDED_ADMIN = "admin"
ENDED_DEACTIVATED = "deactivated"
ENDED_ROLES = "roles"
ENDED_TENANT = "tenant"
ENDED_ROTATED = "rotated"
ENDED_MFA_FAILURES = "mfa-failures"  # too many wrong codes at a step-up
ENDED_MFA_RESET = "mfa-reset"  # an admin removed the user's factors
ENDED_MFA_POLICY = "mfa-policy"  # not ended: the MFA policy changed, gateways look again
MAX_USER_AGENT = 300


class InvalidSessionPolicy(InvalidArgument):
    """A timeout outside its bounds."""


def issue(key: bytes) -> access_tokens.Issued:
    return access_tokens.issue(key, PREFIX)


def split_cookie(value: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed cookie value, else None (cheap; checks no key)."""
    return access_tokens.split_bearer(value, PREFIX)


def id_is_genuine(key: bytes, session_id: str) -> bool:
    return access_tokens.id_is_genuine(key, session_id)


def secret_matches(key: bytes, session_id: str, secret: str, stored_hash: bytes) -> bool:
    return access_tokens.secret_matches(key, session_id, secret, stored_hash)


def csrf_token(key: bytes, session_id: str) -> str:
    """The session's CSRF token (43 URL-safe characters)."""
    digest = hmac.new(key, b"csrf:" + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(key: bytes, session_id: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(key, session_id).encode(), presented.encode()[:64])


def user_actor(user_id: str) -> str:
    return f"{USER_ACTOR_PREFIX}{user_id}"


def actor_user_id(actor: str) -> str | None:
    """The user id when ``actor`` is a signed-in user (``user:<id>``, unchecked), else None."""
    return actor[len(USER_ACTOR_PREFIX) :] if actor.startswith(USER_ACTOR_PREFIX) else None


@dataclass(frozen=True)
class Expiry:
    idle_expires_at: datetime
    expires_at: datetime


def expiry_at_start(now: datetime, idle_seconds: int, absolute_seconds: int) -> Expiry:
    expires_at = now + timedelta(seconds=absolute_seconds)
    return Expiry(min(now + timedelta(seconds=idle_seconds), expires_at), expires_at)


def idle_after_touch(now: datetime, idle_seconds: int, expires_at: datetime) -> datetime:
    return min(now + timedelta(seconds=idle_seconds), expires_at)


def is_live(
    now: datetime, idle_expires_at: datetime, expires_at: datetime, revoked: bool, active: bool
) -> bool:
    return active and not revoked and now < idle_expires_at and now < expires_at


def validate_timeouts(idle_seconds: int, absolute_seconds: int) -> tuple[int, int]:
    if not MIN_IDLE_SECONDS <= idle_seconds <= MAX_IDLE_SECONDS:
        raise InvalidSessionPolicy(
            f"idle_timeout_seconds must be {MIN_IDLE_SECONDS} to {MAX_IDLE_SECONDS}"
        )
    if not MIN_ABSOLUTE_SECONDS <= absolute_seconds <= MAX_ABSOLUTE_SECONDS:
        raise InvalidSessionPolicy(
            f"absolute_timeout_seconds must be {MIN_ABSOLUTE_SECONDS} to {MAX_ABSOLUTE_SECONDS}"
        )
    if idle_seconds > absolute_seconds:
        raise InvalidSessionPolicy("idle_timeout_seconds cannot exceed absolute_timeout_seconds")
    return idle_seconds, absolute_seconds


def printable(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` with controls replaced, for user agents and addresses."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])
