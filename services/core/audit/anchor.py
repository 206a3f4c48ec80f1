"""Anchoring: the head of every tenant database's audit chain, recorded in the control
database, so a chain later cut short or rewritten is caught (``verify``).

One ``tick`` visits at most ``batch`` chains — (tenant, service) pairs of live tenants, the
least recently visited first — and for each: seals what was appended (``log.seal``, as
the tenant's role), reads the head, checks it still extends the last anchor, and appends
a new anchor when the head moved. The control database's own chain is sealed every tick
(nothing outside it could anchor it). A chain found cut or rewritten is logged and left
anchored where it was, as evidence for ``ontrack audit verify``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit.verify import Anchor

logger = logging.getLogger(__name__)

DUE_SQL = """
SELECT t.id, t.slug, t.placement, s.service, a.seq, a.hash
  FROM tenants t
  JOIN tenant_services s ON s.tenant_id = t.id AND s.state = 'ready'
  LEFT JOIN audit_anchor_visits v ON v.tenant_id = t.id AND v.service = s.service
  LEFT JOIN LATERAL (SELECT x.seq, x.hash FROM audit.anchors x
                      WHERE x.tenant_id = t.id AND x.service = s.service
                      ORDER BY x.seq DESC LIMIT 1) a ON true
 WHERE t.status IN ('active', 'suspended')
 ORDER BY v.visited_at NULLS FIRST, t.id, s.service
 LIMIT %s
"""


@dataclass
class TickReport:
    visited: int = 0
    anchored: int = 0
    sealed: int = 0
    broken: list[str] = field(default_factory=list)


def check_head(conn: psycopg.Connection, anchor: Anchor | None) -> tuple[int, bytes, str]:
    """(head seq, head hash, problem): problem is "" when the chain still extends `anchor`."""
    seq, digest = audit_log.head(conn)
    if anchor is None:
        return seq, digest, ""
    if seq < anchor.seq:
        return seq, digest, f"the chain ends at seq {seq}, anchored at seq {anchor.seq}"
    row = conn.execute("SELECT hash FROM audit.seals WHERE seq = %s", (anchor.seq,)).fetchone()
    if row is None or bytes(row[0]) != anchor.hash:
        return seq, digest, f"seq {anchor.seq} differs from its anchor"
    return seq, digest, ""


def tick(
    control: psycopg.Connection,
    connect: Callable[[str, str, str], psycopg.Connection],
    batch: int,
    seal_limit: int = 50_000,
) -> TickReport:
    """One round of anchoring. `control`: an autocommit connection to the control database
    (as its role); `connect(service, slug, placement)`: an autocommit connection to that
    tenant database as the tenant's role. A chain that cannot be reached is logged and
    counts as visited (so it cannot starve the others)."""
    report = TickReport()
    report.sealed += audit_log.seal(control, seal_limit)
    for tenant_id, slug, placement, service, a_seq, a_hash in control.execute(
        DUE_SQL, (batch,)
    ).fetchall():
        anchor = Anchor(a_seq, bytes(a_hash)) if a_seq is not None else None
        try:
            with connect(service, slug, placement) as conn:
                report.sealed += audit_log.seal(conn, seal_limit)
                seq, digest, problem = check_head(conn, anchor)
        except psycopg.Error as exc:
            logger.warning(
                "audit anchor: %s of %s unreachable: %s", service, slug, type(exc).__name__
            )
        else:
            report.visited += 1
            if problem:
                logger.error("audit chain of %s/%s is broken: %s", service, slug, problem)
                report.broken.append(f"{service}/{slug}: {problem}")
            elif seq > (anchor.seq if anchor else 0):
                control.execute(
                    "INSERT INTO audit.anchors (tenant_id, service, seq, hash)"
                    " VALUES (%s, %s, %s, %s)",
                    (tenant_id, service, seq, digest),
                )
                report.anchored += 1
        control.execute(
            "INSERT INTO audit_anchor_visits (tenant_id, service, visited_at)"
            " VALUES (%s, %s, now()) ON CONFLICT (tenant_id, service)"
            " DO UPDATE SET visited_at = excluded.visited_at",
            (tenant_id, service),
        )
    return report
