"""Concurrent queries in one eventlet worker overlap only with psycopg's select-based wait
(the default C wait blocks the hub): measured in a worker-like subprocess."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import sys, time
import ontrackio.core.greening  # the worker's own set-up: patches and cooperative wait
import eventlet, psycopg.waiting
from ontrackio.core.db.cooperative import cooperative_wait_enabled
from ontrackio.core.db.pools import PoolManager

if sys.argv[2] == "c":
    psycopg.waiting.wait = psycopg.waiting.wait_c
else:
    assert cooperative_wait_enabled()
pools = PoolManager(max_total=5, max_per_tenant=5, idle_seconds=60, acquire_timeout=5)

def query(_):
    with pools.connection("db", lambda: sys.argv[1]) as conn:
        conn.execute("SELECT pg_sleep(0.4)")

start = time.monotonic()
list(eventlet.GreenPool(5).imap(query, range(5)))
print(round(time.monotonic() - start, 3))
"""


def run(settings, mode: str) -> float:
    dsn = settings.pg_dsn("main")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, dsn, mode], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


def test_concurrent_queries_overlap_in_a_worker(settings):
    assert run(settings, "select") < 1.2  # five 0.4 s queries at once, not one after another


def test_the_default_wait_would_serialise_them(settings):
    assert run(settings, "c") >= 1.9  # proves the test above measures the wait function
