"""Assets and their owners (owner references follow identity's user events)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from ontrackio.core import paging
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.vocabulary import ASSET_KINDS
from ontrackio.inventory.errors import AssetNotFound, InvalidAsset
from ontrackio.inventory.v1 import events_pb2

KINDS = ASSET_KINDS
SELECT = """SELECT a.id, a.name, a.kind, a.owner_user_id, a.created_at,
    coalesce(o.email, '') AS owner_email, coalesce(o.active, false) AS owner_active
    FROM assets a LEFT JOIN owners o ON o.user_id = a.owner_user_id"""


def validate(name: str, kind: str, owner_user_id: str) -> tuple[str, str, str | None]:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidAsset("name must be 1 to 200 characters")
    if kind not in KINDS:
        raise InvalidAsset(f"kind must be one of {', '.join(KINDS)}")
    owner = paging.parse_id(owner_user_id, "owner_user_id") if owner_user_id else None
    return name, kind, owner


def create(u: UnitOfWork, name: str, kind: str, owner_user_id: str) -> dict[str, Any]:
    name, kind, owner = validate(name, kind, owner_user_id)
    asset_id = str(uuid.uuid4())
    u.conn.execute(
        "INSERT INTO assets (id, name, kind, owner_user_id) VALUES (%s, %s, %s, %s)",
        (asset_id, name, kind, owner),
    )
    u.emit(
        "inventory.asset_created",
        events_pb2.AssetCreated(asset_id=asset_id, name=name, kind=kind, owner_user_id=owner or ""),
    )
    return get(u, asset_id)


def get(u: UnitOfWork, asset_id: str) -> dict[str, Any]:
    return paging.one_by_id(u.conn, SELECT, "a.id", asset_id, AssetNotFound("asset not found"))


def list_page(u: UnitOfWork, size: int, token: str) -> tuple[list[dict[str, Any]], str]:
    return paging.keyset_page(u.conn, SELECT, "a.id", size, token)


def record_owners(u: UnitOfWork, people: Iterable[tuple[str, str]]) -> None:
    """Record possible asset owners (user_id, email) in one statement; a known one takes
    the new email (listed twice: the later wins, as if recorded one after the other)."""
    latest = dict(people)
    u.conn.execute(
        "INSERT INTO owners (user_id, email) SELECT * FROM unnest(%s::uuid[], %s::text[])"
        " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, updated_at = now()",
        (list(latest), list(latest.values())),
    )


def record_leavers(u: UnitOfWork, user_ids: Iterable[str]) -> None:
    """Mark owners as having left (known or not yet), in one statement."""
    u.conn.execute(
        "INSERT INTO owners (user_id, email, active)"
        " SELECT DISTINCT id, '', false FROM unnest(%s::uuid[]) AS id"
        " ON CONFLICT (user_id) DO UPDATE SET active = false, updated_at = now()",
        (list(user_ids),),
    )
