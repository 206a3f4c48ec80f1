"""Inventory metrics for the evidence pack, computed from inventory's asset events."""

from __future__ import annotations

from ontrackio.core.db.tenantdb import UnitOfWork


def record_assets(u: UnitOfWork, assets: list[tuple[str, str, bool]]) -> None:
    """Record new assets (asset_id, kind, has_owner) in one statement; one known already
    keeps its facts."""
    u.conn.execute(
        "INSERT INTO asset_facts (asset_id, kind, has_owner)"
        " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::bool[])"
        " ON CONFLICT (asset_id) DO NOTHING",
        ([a[0] for a in assets], [a[1] for a in assets], [a[2] for a in assets]),
    )


def inventory_metrics(u: UnitOfWork) -> tuple[int, int, float]:
    total, owned = u.conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE has_owner) FROM asset_facts"
    ).fetchone()
    return total, owned, (owned / total if total else 0.0)
