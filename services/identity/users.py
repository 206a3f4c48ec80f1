"""Users of a tenant: the slice proving identity's tenant database and events."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.rows import dict_row

from ontrackio.core import paging
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.domain import users as rules
from ontrackio.identity.errors import UserExists, UserNotFound
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.sessions import rules as session_rules
from ontrackio.identity.sessions import store as sessions
from ontrackio.identity.v1 import events_pb2

COLUMNS = "id, email, display_name, active, created_at"


def create(u: UnitOfWork, email: str, display_name: str) -> dict[str, Any]:
    email = rules.validate_email(email)
    display_name = rules.validate_display_name(display_name)
    user_id = str(uuid.uuid4())
    # A taken email (unique without regard to case: migrations/0001) inserts nothing and
    # leaves the unit usable, so no savepoint is needed to answer UserExists.
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO users (id, email, display_name) VALUES (%s, %s, %s)"
            f" ON CONFLICT ((lower(email))) DO NOTHING RETURNING {COLUMNS}",
            (user_id, email, display_name),
        ).fetchone()
    if row is None:
        raise UserExists("a user with this email already exists")
    u.emit(
        "identity.user_created",
        events_pb2.UserCreated(user_id=user_id, email=email, display_name=display_name),
    )
    return row


def get(u: UnitOfWork, user_id: str) -> dict[str, Any]:
    return paging.one_by_id(
        u.conn, f"SELECT {COLUMNS} FROM users", "id", user_id, UserNotFound("user not found")
    )


def list_page(u: UnitOfWork, size: int, token: str) -> tuple[list[dict[str, Any]], str]:
    return paging.keyset_page(u.conn, f"SELECT {COLUMNS} FROM users", "id", size, token)


def deactivate(u: UnitOfWork, user_id: str, actor: str = "operator") -> dict[str, Any]:
    """A leaver: inactive from now on, every session ended (and forgotten by every gateway)."""
    user = get(u, user_id)
    if user["active"]:
        role_store.check_deactivation(u, user["id"], actor)
        u.conn.execute(
            "UPDATE users SET active = false, updated_at = now() WHERE id = %s", (user["id"],)
        )
        u.emit("identity.user_deactivated", events_pb2.UserDeactivated(user_id=str(user["id"])))
        sessions.revoke_user(u, str(user["id"]), actor, session_rules.ENDED_DEACTIVATED)
        user["active"] = False
    return user
