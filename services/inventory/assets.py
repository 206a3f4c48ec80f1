"""Assets and their owners (owner references follow identity's user events)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from ontrackio.core import paging
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.vocabulary import ASSET_KINDS
from ontrackio.inventory.errors import AssetNotFound, InvalidAsset
from ontrackio.inventory.v1 import events_pb2

KINDS = ASSET_KINDS
SELECT = """SELECT a.id, a.name, a.kind, a.owner_user_id, a.created_at,
    coalesce(o.email, '') AS owner_email, coalesce(o.active, false) AS owner_active,
    a.recovery_key IS NOT NULL AS has_recovery_key
    FROM assets a LEFT JOIN owners o ON o.user_id = a.owner_user_id"""


def validate(name: str, kind: str, owner_user_id: str) -> tuple[str, str, str | None]:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidAsset("name must be 1 to 200 characters")
    if kind not in KINDS:
        raise InvalidAsset(f"kind must be one of {', '.join(KINDS)}")
    owner = paging.parse_id(owner_user_id, "owner_user_id") if owner_user_id else None
    return name, kind, owner


# An encrypted field of a row: (row id, value) -> ciphertext, and back (core/keys/envelope.py).
Seal = Callable[[str, str], bytes]
Unseal = Callable[[str, bytes], str]
RECOVERY_KEY = ("assets", "recovery_key")
MAX_RECOVERY_KEY_CHARS = 256  # BitLocker's are 55 characters, FileVault's 29


def validate_recovery_key(value: str) -> str:
    value = value.strip()
    if len(value) > MAX_RECOVERY_KEY_CHARS or not value.isprintable():
        raise InvalidAsset(
            f"recovery_key must be at most {MAX_RECOVERY_KEY_CHARS} printable characters"
        )
    return value


def create(
    u: UnitOfWork,
    name: str,
    kind: str,
    owner_user_id: str,
    recovery_key: str = "",
    seal: Seal | None = None,
    actor: str = "operator",
) -> dict[str, Any]:
    name, kind, owner = validate(name, kind, owner_user_id)
    recovery_key = validate_recovery_key(recovery_key)
    asset_id = str(uuid.uuid4())
    sealed = seal(asset_id, recovery_key) if recovery_key and seal else None
    u.conn.execute(
        "INSERT INTO assets (id, name, kind, owner_user_id, recovery_key)"
        " VALUES (%s, %s, %s, %s, %s)",
        (asset_id, name, kind, owner, sealed),
    )
    if sealed is not None:
        _audit_recovery_key(u, actor, "set", asset_id)
    u.emit(
        "inventory.asset_created",
        events_pb2.AssetCreated(asset_id=asset_id, name=name, kind=kind, owner_user_id=owner or ""),
    )
    return get(u, asset_id)


def get(u: UnitOfWork, asset_id: str) -> dict[str, Any]:
    return paging.one_by_id(u.conn, SELECT, "a.id", asset_id, AssetNotFound("asset not found"))


def set_recovery_key(
    u: UnitOfWork, asset_id: str, recovery_key: str, seal: Seal, actor: str
) -> dict[str, Any]:
    """Set (or with "" remove) the asset's recovery key; audited."""
    recovery_key = validate_recovery_key(recovery_key)
    # The row's own id, not the caller's spelling of it (a UUID in capitals is the same
    # asset): the ciphertext is bound to it and the audit names it.
    asset_id = str(get(u, asset_id)["id"])
    sealed = seal(asset_id, recovery_key) if recovery_key else None
    u.conn.execute("UPDATE assets SET recovery_key = %s WHERE id = %s", (sealed, asset_id))
    _audit_recovery_key(u, actor, "set" if recovery_key else "remove", asset_id)
    return get(u, asset_id)


def _audit_recovery_key(u: UnitOfWork, actor: str, verb: str, asset_id: str) -> None:
    audit_log.append(
        u.conn,
        audit_log.Entry(
            actor, f"asset.recovery_key_{verb}", f"asset:{asset_id}", origin=origin.current()
        ),
    )


def recovery_key(u: UnitOfWork, asset_id: str, unseal: Unseal, actor: str) -> str:
    """The asset's recovery key; every read is audited (who read which asset's key)."""
    row = paging.one_by_id(
        u.conn,
        "SELECT a.id, a.recovery_key FROM assets a",
        "a.id",
        asset_id,
        AssetNotFound("asset not found"),
    )
    if row["recovery_key"] is None:
        raise AssetNotFound("the asset has no recovery key")
    value = unseal(str(row["id"]), row["recovery_key"])
    _audit_recovery_key(u, actor, "read", str(row["id"]))
    return value


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
