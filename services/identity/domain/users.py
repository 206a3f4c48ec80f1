"""User rules."""

from __future__ import annotations

import re

from ontrackio.identity.errors import InvalidUser

EMAIL_RE = re.compile(
    r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,255}\.[^@\s\x00-\x1f\x7f]{2,63}\Z"
)
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def validate_email(email: str) -> str:
    """The email as given (case kept, as SCIM clients expect), if it is plausible."""
    email = (email or "").strip()
    if len(email) > 320 or not EMAIL_RE.match(email):
        raise InvalidUser("email is not a valid address")
    return email


def validate_display_name(name: str) -> str:
    name = (name or "").strip()
    if len(name) > 200:
        raise InvalidUser("display_name must be at most 200 characters")
    if CONTROL_RE.search(name):
        raise InvalidUser("display_name must not contain control characters")
    return name
