"""Audit trail: what an append costs next to a plain INSERT of the same row, how fast the
chain is sealed and verified.

One identity tenant database is provisioned with the real Provisioner (its own deployment
name; no stack needed). ``plain`` is a table with the audit entries' columns, defaults and
indexes, in the same database, written by the same code path: one row per transaction
(BEGIN, INSERT, COMMIT) as the tenant's role. Appends and plain inserts alternate in
rounds, so drift of the shared machine hits both alike. Then with 16 writer threads, the
same. Sealing (``audit.seal``) and verifying (``core/audit/verify``, every hash recomputed
in Python) run over everything appended.

Goals: append ≤ 2× the plain INSERT, single and 16 writers; verify ≥ 50,000 entries/s.
"""

from __future__ import annotations

import threading
import time

import psycopg

from bench.common import figure, log
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import verify
from ontrackio.core.config import Settings
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.runtime import service_dir

SLUG = "auditbench"
PLAIN_TABLE = """
CREATE TABLE plain (LIKE audit.entries INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES
                     INCLUDING IDENTITY)
"""
ENTRY = audit_log.Entry(
    "token:" + "ab" * 12,
    "token.create",
    "token:" + "cd" * 12,
    None,
    {"name": "deploy", "scopes": ["api:read", "api:write"], "cidrs": [], "expires_at": None},
    origin=audit_log.Origin("req-0123456789", "203.0.113.9", "4bf92f3577b34da6a3ce929d0e0e4736"),
)
PLAIN_SQL = audit_log.APPEND_SQL.replace("audit.entries", "plain")


def _append(conn: psycopg.Connection) -> None:
    audit_log.append(conn, ENTRY)


def _plain(conn: psycopg.Connection) -> None:
    args, _ = audit_log.prepare(ENTRY)  # the same preparation as an append
    conn.execute(PLAIN_SQL, args)


def _run(conninfo: str, fn, n: int, threads: int) -> float:
    """Seconds for `threads` writers to do `n` one-row transactions in total."""
    per = n // threads
    conns = [psycopg.connect(conninfo) for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def work(conn: psycopg.Connection) -> None:
        start.wait()
        for _ in range(per):
            fn(conn)
            conn.commit()

    ts = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    took = time.perf_counter() - t0
    for c in conns:
        c.close()
    return took


def _compare(conninfo: str, total: int, threads: int, rounds: int = 5) -> tuple[float, float]:
    """(µs per append, µs per plain insert), alternating rounds."""
    a = p = 0.0
    for _ in range(rounds):
        p += _run(conninfo, _plain, total // rounds, threads)
        a += _run(conninfo, _append, total // rounds, threads)
    return a / total * 1e6, p / total * 1e6


def run(settings: Settings, n: int = 10_000) -> tuple[list[dict], dict]:
    clusters = Clusters(settings)
    prov = Provisioner(
        "identity",
        clusters,
        mig.for_service(service_dir("identity")),
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
        use_template=False,
    )
    prov.provision(SLUG, "main")
    conninfo = clusters.tenant_conninfo("identity", SLUG, "main")
    raw: dict = {"entries": n}
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(PLAIN_TABLE)
        append_1, plain_1 = _compare(conninfo, n, 1)
        log(f"  1 writer: append {append_1:.0f} µs, plain insert {plain_1:.0f} µs")
        append_16, plain_16 = _compare(conninfo, n, 16)
        log(f"  16 writers: append {append_16:.0f} µs, plain insert {plain_16:.0f} µs (wall/row)")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            total = conn.execute("SELECT count(*) FROM audit.entries").fetchone()[0]
            t0 = time.perf_counter()
            sealed = 0
            while sealed < total and time.perf_counter() - t0 < 120:
                sealed += audit_log.seal(conn, 50_000)
            seal_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = verify.verify(conn, prov.names.tenant_database(SLUG), None)
            verify_s = time.perf_counter() - t0
        raw.update(
            append_us_1=append_1,
            plain_us_1=plain_1,
            append_us_16=append_16,
            plain_us_16=plain_16,
            sealed=sealed,
            seal_seconds=seal_s,
            verified=result.sealed,
            verify_seconds=verify_s,
            verify_ok=result.ok,
        )
        log(
            f"  sealed {sealed} in {seal_s:.2f} s, verified {result.sealed} in {verify_s:.2f} s"
            f" ({'intact' if result.ok else result.reason})"
        )
    finally:
        prov.drop(SLUG, "main")
    figs = [
        figure(
            "audit append, 1 writer",
            append_1,
            plain_1,
            "µs/entry",
            "ratio <= 2",
            append_1 <= 2 * plain_1,
            f"{n} one-row transactions each, alternating rounds; baseline: plain INSERT of the "
            "same row (same columns, defaults, indexes) in the same database",
        ),
        figure(
            "audit append, 16 writers",
            append_16,
            plain_16,
            "µs/entry (wall)",
            "ratio <= 2",
            append_16 <= 2 * plain_16,
            f"{n} one-row transactions by 16 threads on one tenant database; appends take no "
            "lock (the chain is sealed apart, audit.seal)",
        ),
        figure(
            "audit seal",
            sealed / seal_s if seal_s else None,
            None,
            "entries/s",
            "",
            None,
            "audit.seal in 50,000-entry calls (one statement each), after the appends",
        ),
        figure(
            "audit verify",
            result.sealed / verify_s if verify_s else None,
            None,
            "entries/s",
            ">= 50,000",
            result.ok and result.sealed / verify_s >= 50_000,
            f"{result.sealed} entries, every hash recomputed in Python from the raw columns",
        ),
    ]
    return figs, raw
