"""The register of data subjects, fed by identity's user events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ontrackio.core import paging
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.errors import NotFound


def record(u: UnitOfWork, people: Iterable[tuple[str, str]]) -> None:
    """Record data subjects (user_id, email) in one statement; a known one takes the new
    email (listed twice: the later wins, as if recorded one after the other)."""
    latest = dict(people)
    u.conn.execute(
        "INSERT INTO data_subjects (user_id, email)"
        " SELECT * FROM unnest(%s::uuid[], %s::text[])"
        " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email",
        (list(latest), list(latest.values())),
    )


def get(u: UnitOfWork, user_id: str) -> dict[str, Any]:
    return paging.one_by_id(
        u.conn,
        "SELECT user_id, email, first_seen_at FROM data_subjects",
        "user_id",
        user_id,
        NotFound("data subject not found"),
        what="user_id",
    )


def count(u: UnitOfWork) -> int:
    return u.conn.execute("SELECT count(*) FROM data_subjects").fetchone()[0]
