"""Checking one database's audit chain: every hash recomputed, compared with its anchor.

Reads the sealed entries in chain order, a batch at a time, and recomputes every hash with
``chain`` from the raw columns (never with the functions the audit role owns, which
whoever tampers could replace). The first problem ends the check and is named: the
database, the chain position (seq) and the reason. An anchor (the head
recorded earlier in the control database) also catches what the chain alone cannot: a
chain cut short (rows deleted or truncated at its end) or rewritten consistently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from ontrackio.core.audit import chain
from ontrackio.core.tenancy import Names

BATCH = 20_000

ROWS_SQL = """
SELECT s.seq, e.id, (extract(epoch FROM e.at) * 1000000)::bigint, e.actor, e.action,
       e.outcome, e.target, e.old_value, e.new_value, e.request_id, e.client_address,
       e.trace_id, s.hash, s.entry_id
  FROM audit.seals s LEFT JOIN audit.entries e ON e.id = s.entry_id
 WHERE s.seq > %s ORDER BY s.seq LIMIT %s
"""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: bytes


@dataclass(frozen=True)
class Result:
    database: str
    sealed: int  # entries checked (the chain's length)
    unsealed: int  # appended, not sealed yet (not covered by the check)
    anchor: Anchor | None
    seq: int | None = None  # where the chain is broken; None when intact
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.seq is None


def verify(conn: psycopg.Connection, database: str, anchor: Anchor | None) -> Result:
    """Check the chain of `database` (reached through `conn`) against `anchor`."""
    expected, previous, anchored_hash = 1, chain.GENESIS, None
    link = chain.link

    def broken(seq: int, reason: str) -> Result:
        return Result(database, expected - 1, _unsealed(conn), anchor, seq, reason)

    while True:
        rows = conn.execute(ROWS_SQL, (expected - 1, BATCH)).fetchall()
        for row in rows:
            seq = row[0]
            if seq != expected:
                return broken(expected, f"seq {expected} is missing (the next is {seq})")
            if row[1] is None:
                return broken(seq, f"its entry (id {row[13]}) is missing")
            digest = link(previous, row[:12])
            if digest != row[12]:
                return broken(
                    seq, "hash mismatch: the entry or an earlier one was changed or removed"
                )
            if anchor is not None and seq == anchor.seq:
                anchored_hash = digest
            previous = digest
            expected += 1
        if len(rows) < BATCH:
            break
    length = expected - 1
    if anchor is not None:
        if length < anchor.seq:
            return Result(
                database,
                length,
                _unsealed(conn),
                anchor,
                length + 1,
                f"the chain ends at seq {length} but was anchored at seq {anchor.seq}"
                " (entries removed or truncated)",
            )
        if anchored_hash != anchor.hash:
            return Result(
                database,
                length,
                _unsealed(conn),
                anchor,
                anchor.seq,
                "diverges from its anchor (the chain was rewritten)",
            )
    return Result(database, length, _unsealed(conn), anchor)


def _unsealed(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM audit.entries e"
        " WHERE NOT EXISTS (SELECT 1 FROM audit.seals s WHERE s.entry_id = e.id)"
    ).fetchone()[0]


LAST_ANCHORS_SQL = """
SELECT DISTINCT ON (service) service, seq, hash FROM audit.anchors
 WHERE tenant_id = %s ORDER BY service, seq DESC
"""


def last_anchors(control: psycopg.Connection, tenant_id) -> dict[str, Anchor]:
    """The last anchor of each service's chain of one tenant (from the control database)."""
    rows = control.execute(LAST_ANCHORS_SQL, (tenant_id,)).fetchall()
    return {service: Anchor(seq, bytes(h)) for service, seq, h in rows}


class UnknownTenant(LookupError):
    """`verify_deployment` was asked for a tenant the registry does not hold."""


def verify_deployment(
    clusters,
    deployment: str,
    control_placement: str,
    slug: str | None = None,
    *,
    services: Sequence[str],
    registry_service: str,
):
    """Check every audit chain of a deployment: the control database's (it belongs to
    `registry_service`), then each live tenant's database of every one of `services` (only
    `slug`'s when given, UnknownTenant if there is no such live tenant), each against its
    last anchor. Uses admin connections (read only).
    A tenant database that is gone while anchored counts as broken; one never provisioned
    (no anchor, no database) is skipped."""
    control = Names(deployment, registry_service)
    results: list[Result] = []
    with clusters.admin_connect(control_placement, control.control_database) as conn:
        tenants = conn.execute(
            "SELECT id, slug, placement FROM tenants WHERE status <> 'deleted'"
            " AND (%s::text IS NULL OR slug = %s) ORDER BY slug",
            (slug, slug),
        ).fetchall()
        if slug is not None and not tenants:
            raise UnknownTenant(slug)
        if slug is None:
            results.append(verify(conn, control.control_database, None))
        anchors = {t[0]: last_anchors(conn, t[0]) for t in tenants}
    for tenant_id, tenant_slug, placement in tenants:
        for service in services:
            database = Names(deployment, service).tenant_database(tenant_slug)
            anchor = anchors[tenant_id].get(service)
            try:
                with clusters.admin_connect(placement, database) as conn:
                    results.append(verify(conn, database, anchor))
            except psycopg.OperationalError:
                if anchor is not None:
                    results.append(
                        Result(
                            database,
                            0,
                            0,
                            anchor,
                            1,
                            f"the database is unreachable or gone (anchored at seq {anchor.seq})",
                        )
                    )
    return results
