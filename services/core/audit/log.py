"""Appending to and reading a database's audit trail (schema ``audit``, core migration 0002).

``append`` is one plain INSERT in the caller's transaction: the entry commits or rolls back
with the change it records, and takes no lock. ``seal`` (one statement, ``audit.seal``)
later gives the committed entries their chain position and hash, in one total order; the
identity worker's anchor timer seals every database before anchoring it. Actors and targets
are opaque ids; anything else given as an actor, and every ``Personal`` value, is stored in
``audit.personal`` and referenced as ``pv:<uuid>``, so an erasure can pseudonymise it
without touching the chain.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ontrackio.core.audit import chain

ACTION_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\Z")
# Opaque ids kept as they are; any other actor is a personal value.
OPAQUE_RE = re.compile(
    r"(system|operator|anonymous|token:[0-9a-f]{24}"
    r"|(user|tenant):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|pv:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\Z"
)
REF_PREFIX = "pv:"
OUTCOMES = ("done", "refused")
LIMITS = {"target": 200, "request_id": 128, "client_address": 64, "trace_id": 32}
PERSONAL_MAX = 1000


@dataclass(frozen=True)
class Personal:
    """A personal value an entry needs (an email): stored beside the chain, by id."""

    kind: str
    value: str


@dataclass(frozen=True)
class Origin:
    """Where an act came from: the edge's request id, the client's address, the trace."""

    request_id: str = ""
    client_address: str = ""
    trace_id: str = ""


@dataclass(frozen=True)
class Entry:
    """One audited act (outcome "done") or refused attempt (outcome "refused")."""

    actor: str | Personal
    action: str  # <noun>.<verb>, e.g. token.create, allowlist.denied
    target: str | Personal = ""
    old: Any = None
    new: Any = None
    outcome: str = "done"
    origin: Origin = field(default_factory=Origin)


def clean(text: object, limit: int) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogates (escaped), at most `limit`
    characters."""
    s = str(text or "").replace("\x00", "")
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s[:limit]


class _Personals:
    def __init__(self) -> None:
        self.ids: list[uuid.UUID] = []
        self.kinds: list[str] = []
        self.values: list[str] = []

    def ref(self, p: Personal) -> str:
        pid = uuid.uuid4()
        self.ids.append(pid)
        self.kinds.append(clean(p.kind, 40) or "value")
        self.values.append(clean(p.value, PERSONAL_MAX))
        return f"{REF_PREFIX}{pid}"

    def walk(self, value: Any) -> Any:
        if isinstance(value, Personal):
            return self.ref(value)
        if isinstance(value, dict):
            return {str(k): self.walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.walk(v) for v in value]
        return value


def _actor(actor: str | Personal, personals: _Personals) -> str:
    if isinstance(actor, Personal):
        return personals.ref(actor)
    actor = clean(actor, 200) or "anonymous"
    return actor if OPAQUE_RE.match(actor) else personals.ref(Personal("actor", actor))


def prepare(entry: Entry) -> tuple[tuple, _Personals]:
    """The append function's arguments for `entry` (ValueError for a bad action/outcome)."""
    if not ACTION_RE.match(entry.action) or len(entry.action) > 64:
        raise ValueError(f"audit action {entry.action!r} is not <noun>.<verb>")
    if entry.outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}")
    p = _Personals()
    actor = _actor(entry.actor, p)
    target = (
        p.ref(entry.target)
        if isinstance(entry.target, Personal)
        else clean(entry.target, LIMITS["target"])
    )
    o = entry.origin
    args = (
        actor,
        entry.action,
        entry.outcome,
        target,
        chain.canonical_json(p.walk(entry.old)),
        chain.canonical_json(p.walk(entry.new)),
        clean(o.request_id, LIMITS["request_id"]),
        clean(o.client_address, LIMITS["client_address"]),
        clean(o.trace_id, LIMITS["trace_id"]),
    )
    return args, p


APPEND_SQL = (
    "INSERT INTO audit.entries (actor, action, outcome, target, old_value, new_value,"
    " request_id, client_address, trace_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
APPEND_WITH_PERSONAL_SQL = (
    "WITH p AS (INSERT INTO audit.personal (id, kind, value)"
    " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[]))"
    f" {APPEND_SQL}"
)


def append(conn: psycopg.Connection, entry: Entry) -> None:
    """Append `entry` in the connection's current transaction (one INSERT, no lock)."""
    args, p = prepare(entry)
    if p.ids:
        conn.execute(APPEND_WITH_PERSONAL_SQL, (p.ids, p.kinds, p.values, *args))
    else:
        conn.execute(APPEND_SQL, args)


def seal(conn: psycopg.Connection, limit: int = 50_000) -> int:
    """Seal up to `limit` committed entries; returns how many (0 also when another sealer
    holds the database's chain). Run in a transaction of its own (autocommit)."""
    return conn.execute("SELECT audit.seal(%s)", (limit,)).fetchone()[0]


def pseudonymise(conn: psycopg.Connection, reference: str) -> bool:
    """Replace the personal value behind `reference` (``pv:<uuid>``) by a pseudonym."""
    if not reference.startswith(REF_PREFIX):
        return False
    try:
        pid = uuid.UUID(reference[len(REF_PREFIX) :])
    except ValueError:
        return False
    row = conn.execute("SELECT audit.pseudonymise(%s)", (pid,)).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class Filters:
    actor: str = ""  # an opaque id, or a personal value (its references match)
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None


LIST_SQL = """
SELECT e.id, s.seq, e.at, e.actor, e.action, e.outcome, e.target, e.old_value, e.new_value,
       e.request_id, e.client_address, e.trace_id,
       pa.value AS actor_value, pt.value AS target_value
  FROM audit.entries e
  LEFT JOIN audit.seals s ON s.entry_id = e.id
  LEFT JOIN audit.personal pa
         ON e.actor LIKE 'pv:%%' AND pa.id::text = substr(e.actor, 4)
  LEFT JOIN audit.personal pt
         ON e.target LIKE 'pv:%%' AND pt.id::text = substr(e.target, 4)
 WHERE (%(before)s::bigint IS NULL OR e.id < %(before)s)
   AND (%(actor)s = '' OR e.actor = %(actor)s OR e.actor IN
        (SELECT 'pv:' || p.id FROM audit.personal p WHERE p.value = %(actor)s))
   AND (%(action)s = '' OR e.action = %(action)s)
   AND (%(since)s::timestamptz IS NULL OR e.at >= %(since)s)
   AND (%(until)s::timestamptz IS NULL OR e.at < %(until)s)
 ORDER BY e.id DESC
 LIMIT %(limit)s
"""


def list_entries(
    conn: psycopg.Connection, filters: Filters, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """Entries newest first (by append), appended before entry `before_id` (None: from
    the newest), at most `limit`; ``seq`` is None for an entry not sealed yet; old/new
    parsed; personal references resolved in ``actor_value`` / ``target_value`` (None for
    opaque ids)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            LIST_SQL,
            {
                "before": before_id,
                "actor": clean(filters.actor, PERSONAL_MAX),
                "action": clean(filters.action, 64),
                "since": filters.since,
                "until": filters.until,
                "limit": limit,
            },
        ).fetchall()
    for r in rows:
        r["old_value"] = None if r["old_value"] is None else json.loads(r["old_value"])
        r["new_value"] = None if r["new_value"] is None else json.loads(r["new_value"])
    return rows


def head(conn: psycopg.Connection) -> tuple[int, bytes]:
    """The chain head: (seq, hash) of the last sealed entry, (0, GENESIS) for none."""
    row = conn.execute("SELECT seq, hash FROM audit.seals ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, chain.GENESIS) if row is None else (row[0], bytes(row[1]))
