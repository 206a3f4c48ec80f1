"""The register of data subjects, fed by identity's user events."""

from __future__ import annotations

from typing import Any

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
