"""Named external collaborators: what a valid exception is.

An exception names one address (kept as given, compared without regard to case, like
users' emails), why it is granted, and when it ends. The expiry is required: a permanent
exception is a verified domain's job, or a user account's.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from ontrackio.identity.domain.users import validate_email
from ontrackio.identity.errors import InvalidCollaborator, InvalidUser

MAX_REASON_CHARS = 500
MAX_EXPIRY = timedelta(days=366)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def validate_address(address: str) -> str:
    """The address as given (trimmed), if it is one a user's email could be."""
    try:
        return validate_email(address)
    except InvalidUser:
        raise InvalidCollaborator("address is not a valid email address") from None


def validate_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidCollaborator("reason is required: say why this person may sign in")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidCollaborator(f"reason must be at most {MAX_REASON_CHARS} characters")
    if _CONTROL.search(reason):
        raise InvalidCollaborator("reason must not contain control characters")
    return reason


def validate_expiry(expires_at: datetime | None, now: datetime) -> datetime:
    """``expires_at`` if it is after ``now`` and at most MAX_EXPIRY ahead (both aware)."""
    if expires_at is None:
        raise InvalidCollaborator("expires_at is required")
    if expires_at <= now:
        raise InvalidCollaborator("expires_at must be in the future")
    if expires_at - now > MAX_EXPIRY:
        raise InvalidCollaborator(f"expires_at must be at most {MAX_EXPIRY.days} days ahead")
    return expires_at


def same_address(a: str, b: str) -> bool:
    """Whether two addresses name the same person for an exception (case ignored, as the
    store's ``lower(address)`` index does; PostgreSQL and Python agree on ASCII, and where
    they might not for other letters, a mismatch here refuses rather than admits)."""
    return a.strip().lower() == b.strip().lower()
