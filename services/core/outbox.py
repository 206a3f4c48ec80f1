"""The transactional outbox: events are rows written with the change that caused them.

After the commit the writing process's relay (core/relay.py) publishes them and marks them
sent; the worker's sweep publishes whatever a crash or a broker outage left unsent. So an
event may be published twice, never lost; consumers' inboxes make the effect happen once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from ontrackio.core.bus import Publisher
from ontrackio.core.events import Event

log = logging.getLogger(__name__)


def add(conn: psycopg.Connection, event: Event) -> None:
    """Write `event` in the caller's transaction."""
    conn.execute(
        "INSERT INTO outbox (id, tenant, type, schema_version, occurred_at, trace, payload)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            event.id,
            event.tenant,
            event.type,
            event.schema_version,
            event.occurred_at,
            Jsonb(event.trace),
            Jsonb(event.payload),
        ),
    )


def mark_sent(conn: psycopg.Connection, ids: list[str]) -> None:
    conn.execute("UPDATE outbox SET published_at = now() WHERE id = ANY(%s::uuid[])", (ids,))


def mark_sent_alone(conn: psycopg.Connection, ids: list[str]) -> None:
    """mark_sent as a statement of its own on an idle connection: one round trip, where a
    transaction would add a BEGIN and a COMMIT."""
    conn.autocommit = True
    try:
        mark_sent(conn, ids)
    finally:
        if not (conn.closed or conn.broken):
            conn.autocommit = False


def sweep(
    conn: psycopg.Connection, publisher: Publisher, *, min_age: float = 1.0, batch: int = 500
) -> int:
    """Publish unsent rows older than `min_age` seconds; returns how many were sent."""
    sent = 0
    while True:
        with conn.transaction():
            rows = conn.execute(
                "SELECT id, tenant, type, schema_version, occurred_at, trace, payload FROM outbox"
                " WHERE published_at IS NULL AND occurred_at < now() - %s"
                " ORDER BY occurred_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (timedelta(seconds=min_age), batch),
            ).fetchall()
            if not rows:
                return sent
            events = [Event(str(r[0]), r[1], r[2], r[3], r[4], r[6], r[5]) for r in rows]
            publisher.publish(events)
            mark_sent(conn, [e.id for e in events])
        sent += len(events)
        if len(rows) < batch:
            return sent


class SweepPlan:
    """Which tenant databases the worker's periodic sweep must visit; keys are
    (placement, slug).

    A crashed writer can only have left unsent rows in a database it inserted into, so a
    database whose insert counter (pg_stat_database.tup_inserted) is the same as when a
    sweep left its outbox empty is skipped: at 210 idle tenants, visiting each database
    every 30 s (a connection each, beyond the pool cap) was 0.12-0.25 cores of idle CPU.
    The counter is read before the sweep and recorded only if the sweep left nothing
    unsent, so rows too young to sweep, or whose statistics a backend reports a little
    late (PostgreSQL flushes them within seconds), are found by a later sweep. An unknown
    counter means a visit.
    """

    def __init__(self) -> None:
        self._clean: dict[tuple[str, str], int] = {}

    def due(self, key: tuple[str, str], inserts: int | None) -> bool:
        return inserts is None or self._clean.get(key) != inserts

    def swept(self, key: tuple[str, str], inserts: int | None, unsent: int) -> None:
        """Record a visit: `inserts` as read before it, `unsent` events left after it."""
        if inserts is not None and unsent == 0:
            self._clean[key] = inserts
        else:
            self._clean.pop(key, None)

    def keep_only(self, present: set[tuple[str, str]], unreachable: set[str]) -> None:
        """Forget databases that no longer exist (those of unreachable clusters stay)."""
        for key in list(self._clean):
            if key not in present and key[0] not in unreachable:
                del self._clean[key]


def backlog(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]


def purge_sent(conn: psycopg.Connection, older_than: timedelta = timedelta(days=7)) -> int:
    with conn.transaction():
        cur = conn.execute("DELETE FROM outbox WHERE published_at < now() - %s", (older_than,))
    return cur.rowcount
