"""Inventory metrics for the evidence pack, computed from inventory's asset events."""

from __future__ import annotations

from ontrackio.core.db.tenantdb import UnitOfWork


def record_asset(u: UnitOfWork, asset_id: str, kind: str, owner_user_id: str) -> None:
    u.conn.execute(
        "INSERT INTO asset_facts (asset_id, kind, has_owner) VALUES (%s, %s, %s)"
        " ON CONFLICT (asset_id) DO NOTHING",
        (asset_id, kind, bool(owner_user_id)),
    )


def inventory_metrics(u: UnitOfWork) -> tuple[int, int, float]:
    total, owned = u.conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE has_owner) FROM asset_facts"
    ).fetchone()
    return total, owned, (owned / total if total else 0.0)
