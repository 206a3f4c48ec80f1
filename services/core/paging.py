"""Keyset pagination: opaque page tokens and page-size limits shared by every list call."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

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
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        # RecursionError: JSON nested deeper than the interpreter's limit is forged too.
        raise InvalidArgument("page_token is not valid") from None


def parse_id(value: str, what: str) -> str:
    """A UUID given by a caller, or InvalidArgument naming `what`."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{what} must be a UUID") from None


def keyset_page(
    conn: psycopg.Connection, select: str, id_column: str, size: int, token: str
) -> tuple[list[dict[str, Any]], str]:
    """One page of `select` (a SELECT without WHERE) ordered by the UUID `id_column`,
    starting after the page token; returns the rows and the next token ("" at the end)."""
    size, after = page_size(size), decode(token)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"{select} WHERE %s::uuid IS NULL OR {id_column} > %s::uuid"
            f" ORDER BY {id_column} LIMIT %s",
            (after, after, size + 1),
        ).fetchall()
    more = len(rows) > size
    rows = rows[:size]
    return rows, encode(str(rows[-1]["id"])) if more else ""


def one_by_id(
    conn: psycopg.Connection,
    select: str,
    id_column: str,
    value: str,
    missing: Exception,
    what: str = "id",
) -> dict[str, Any]:
    """The row of `select` (a SELECT without WHERE) whose UUID `id_column` is `value`;
    InvalidArgument if `value` is no UUID, `missing` if there is no such row."""
    value = parse_id(value, what)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{select} WHERE {id_column} = %s", (value,)).fetchone()
    if row is None:
        raise missing
    return row


def encode_position(position: int) -> str:
    """A page token for lists ordered by an integer position (e.g. an append order)."""
    return encode(str(position))


def decode_position(token: str) -> int | None:
    """The position a page starts after; None for the first page; InvalidArgument if forged."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        after = json.loads(raw)["after"]
        if not isinstance(after, str) or not after.isascii() or not after.isdigit():
            raise ValueError(after)
        position = int(after)
        if not 0 < position < 1 << 63:
            raise ValueError(after)
        return position
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError, RecursionError):
        raise InvalidArgument("page_token is not valid") from None
