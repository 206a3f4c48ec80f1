"""Keyset pagination: opaque page tokens and page-size limits shared by every list call."""

from __future__ import annotations

import base64
import json
import uuid

from ontrackio.core.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be at most {MAX_PAGE_SIZE}")
    return requested or DEFAULT_PAGE_SIZE


def encode(after_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after_id}).encode()).decode().rstrip("=")


def decode(token: str) -> str | None:
    """The id a page starts after; None for the first page; InvalidArgument if forged."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return str(uuid.UUID(json.loads(raw)["after"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidArgument("page_token is not valid") from None


def parse_id(value: str, what: str) -> str:
    """A UUID given by a caller, or InvalidArgument naming `what`."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{what} must be a UUID") from None
