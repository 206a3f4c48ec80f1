"""Concurrent queries in one eventlet worker overlap only with psycopg's select-based wait
(the default C wait blocks the hub): measured in a worker-like subprocess.

Judged by order, not by a wall-clock bound: each query notes when it was sent and when it
returned, and the check is how many were in flight at once. Five queries that overlap are
all sent before the first returns, however loaded the machine; five that run one after
another never overlap."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys, time
import ontrackio.core.greening  # the worker's own set-up: patches and cooperative wait
import eventlet, psycopg.waiting
from ontrackio.core.db.cooperative import cooperative_wait_enabled
from ontrackio.core.db.pools import PoolManager

if sys.argv[2] == "c":
    psycopg.waiting.wait = psycopg.waiting.wait_c
else:
    assert cooperative_wait_enabled()
pools = PoolManager(max_total=5, max_per_tenant=5, idle_seconds=60, acquire_timeout=30)

def query(_):
    with pools.connection("db", lambda: sys.argv[1]) as conn:
        sent = time.monotonic()
        conn.execute("SELECT pg_sleep(1.0)")  # long beside a connect, even on a loaded host
        return sent, time.monotonic()

print(json.dumps(list(eventlet.GreenPool(5).imap(query, range(5)))))
"""

QUERIES = 5


def in_flight_at_once(settings, mode: str) -> int:
    """The most queries of the five that were in flight at the same moment."""
    dsn = settings.pg_dsn("main")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, dsn, mode], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    spans = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(spans) == QUERIES
    return max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)


def test_concurrent_queries_overlap_in_a_worker(settings):
    assert in_flight_at_once(settings, "select") == QUERIES  # all sent before one returned


def test_the_default_wait_would_serialise_them(settings):
    # The same measure sees the blocking wait: the test above would fail without ours.
    assert in_flight_at_once(settings, "c") == 1
