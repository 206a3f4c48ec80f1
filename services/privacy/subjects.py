"""The register of data subjects, fed by identity's user events."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from ontrackio.core import paging
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.errors import NotFound


def record(u: UnitOfWork, user_id: str, email: str) -> None:
    u.conn.execute(
        "INSERT INTO data_subjects (user_id, email) VALUES (%s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email",
        (user_id, email),
    )


def get(u: UnitOfWork, user_id: str) -> dict[str, Any]:
    user_id = paging.parse_id(user_id, "user_id")
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT user_id, email, first_seen_at FROM data_subjects WHERE user_id = %s", (user_id,)
        ).fetchone()
    if row is None:
        raise NotFound("data subject not found")
    return row


def count(u: UnitOfWork) -> int:
    return u.conn.execute("SELECT count(*) FROM data_subjects").fetchone()[0]
