"""Per-tenant pools against the real PostgreSQL: the per-process cap holds, the least
recently used tenant gives way, idle connections close, killed backends are replaced."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg import sql

from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager, PoolTimeout
from tests.helpers import eventually, eventually_passes


@pytest.fixture(scope="module")
def databases(settings):
    """Five scratch databases of this deployment (dropped with it)."""
    names = [f"{settings.deployment}_pooltest_{uuid.uuid4().hex[:8]}" for _ in range(5)]
    with Clusters(settings).admin_connect("main") as conn:
        for n in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(n)))
    return names


@pytest.fixture
def app_name():
    return f"pooltest-{uuid.uuid4().hex[:8]}"


def conninfo(settings, db, app):
    return lambda: psycopg.conninfo.make_conninfo(
        Clusters(settings).admin_conninfo("main", db), application_name=app
    )


def backends(settings, app) -> list[int]:
    with Clusters(settings).admin_connect("main") as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
            )
        ]


def databases_served(settings, app) -> list[str]:
    """The databases the backends of `app` are connected to, sorted (one entry per backend)."""
    with Clusters(settings).admin_connect("main") as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_stat_activity WHERE application_name = %s", (app,)
        )
        return sorted(r[0] for r in rows)


def test_cap_holds_and_lru_tenant_gives_way(settings, databases, app_name):
    """Observed from the server: which databases still have a backend after each eviction."""
    pools = PoolManager(max_total=3, max_per_tenant=2, idle_seconds=60, acquire_timeout=2)

    def use(db):
        with pools.connection(db, conninfo(settings, db, app_name)) as conn:
            conn.execute("SELECT 1")

    def served_are(expected):
        def check():
            assert databases_served(settings, app_name) == sorted(expected)

        eventually_passes(check)

    for db in databases:  # each tenant in turn: never more than 3 backends
        use(db)
        assert len(backends(settings, app_name)) <= 3
    stats = pools.stats()
    assert stats.total == 3 and stats.evicted == 2 and stats.opened == 5
    # The survivors are the three most recently used tenants (an evicted backend is closed,
    # and leaves pg_stat_activity once it has exited).
    served_are(databases[-3:])
    # Recency is of use, not of opening: reusing the oldest survivor makes the next one the
    # least recently used, and that one gives way to a newcomer.
    use(databases[2])
    use(databases[0])
    stats = pools.stats()
    assert stats.total == 3 and stats.evicted == 3 and stats.opened == 6
    served_are([databases[0], databases[2], databases[4]])
    pools.close()
    eventually(lambda: backends(settings, app_name) == [])


def test_waits_then_times_out_when_all_connections_are_busy(settings, databases, app_name):
    pools = PoolManager(max_total=1, max_per_tenant=1, idle_seconds=60, acquire_timeout=0.3)
    with pools.connection(databases[0], conninfo(settings, databases[0], app_name)):
        start = time.monotonic()
        with pytest.raises(PoolTimeout):
            with pools.connection(databases[1], conninfo(settings, databases[1], app_name)):
                pass
        assert time.monotonic() - start >= 0.25
    pools.close()


def test_idle_connections_are_closed_by_the_reaper(settings, databases, app_name):
    """Nobody calls reap(): the manager's own reaper thread closes the connection once it
    has been idle for idle_seconds, and its backend goes away."""
    pools = PoolManager(max_total=3, max_per_tenant=2, idle_seconds=0.2, acquire_timeout=2)
    with pools.connection(databases[0], conninfo(settings, databases[0], app_name)) as c:
        c.execute("SELECT 1")
    assert len(backends(settings, app_name)) == 1
    eventually(lambda: pools.stats().closed == 1, timeout=10)
    assert pools.stats().total == 0
    eventually(lambda: backends(settings, app_name) == [], timeout=10)
    pools.close()


def test_killed_backend_is_replaced_without_an_error(settings, databases, app_name):
    pools = PoolManager(max_total=3, max_per_tenant=2, idle_seconds=60, acquire_timeout=2)
    db = databases[0]
    with pools.connection(db, conninfo(settings, db, app_name)) as conn:
        first = conn.info.backend_pid
    with Clusters(settings).admin_connect("main") as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    # Gone from pg_stat_activity only after it sent its FATAL notice: the socket is readable.
    eventually(lambda: first not in backends(settings, app_name))
    with pools.connection(db, conninfo(settings, db, app_name)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.backend_pid != first
    assert pools.stats().total == 1
    pools.close()
