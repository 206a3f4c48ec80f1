"""PoolManager's bookkeeping, driven with fake connections (no database).

A fake connection owns one end of a local socketpair as its "backend socket", so the
pool's select()-based liveness check runs for real: closing the peer end, or writing to
it, is what a terminating server does.
"""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import grpc
import psycopg
import pytest
from psycopg import pq

from ontrackio.core.db.pools import PoolManager, PoolStats, PoolTimeout
from ontrackio.core.errors import InvalidArgument, Unavailable
from ontrackio.core.grpcstatus import status_for
from tests.helpers import eventually

IDLE = pq.TransactionStatus.IDLE
INTRANS = pq.TransactionStatus.INTRANS
INERROR = pq.TransactionStatus.INERROR


class FakeConnection:
    """What PoolManager touches on a psycopg.Connection."""

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self._sock, self.server_end = socket.socketpair()
        self.closed = False
        self.broken = False
        self.info = SimpleNamespace(transaction_status=IDLE)
        self.rollbacks = 0
        self.rollback_fails = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def rollback(self) -> None:
        self.rollbacks += 1
        if self.rollback_fails:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.info.transaction_status = IDLE

    def close(self) -> None:
        self.closed = True
        self._sock.close()
        self.server_end.close()

    def server_terminates(self) -> None:
        self.server_end.close()


class FakeServer:
    """Stands in for psycopg.connect; can be told to refuse."""

    def __init__(self):
        self.connections: list[FakeConnection] = []
        self.refuse = False

    def connect(self, conninfo: str) -> FakeConnection:
        if self.refuse:
            raise psycopg.OperationalError("connection refused")
        conn = FakeConnection(conninfo)
        self.connections.append(conn)
        return conn

    def close_all(self) -> None:
        for conn in self.connections:
            conn.close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close_all()


@pytest.fixture
def make_manager(server):
    made: list[PoolManager] = []

    def make(*, max_total=4, max_per_tenant=2, idle_seconds=60.0, acquire_timeout=0.05):
        pm = PoolManager(
            max_total=max_total,
            max_per_tenant=max_per_tenant,
            idle_seconds=idle_seconds,
            acquire_timeout=acquire_timeout,
            connect=server.connect,
        )
        made.append(pm)
        return pm

    yield make
    for pm in made:
        pm.close()


def dsn(key: str):
    return lambda: f"dbname={key}"


def waiting(pm: PoolManager) -> int:
    """How many callers are inside acquire (waiting, for the tests that use it): read under
    the manager's lock, for synchronisation only (a waiter holds that lock from taking its
    ticket until it waits on the condition, so one counted here is waiting)."""
    with pm._cond:
        return len(pm._waiting)


def use(pm: PoolManager, key: str) -> FakeConnection:
    """Acquire and immediately release a connection to `key`; returns it."""
    with pm.connection(key, dsn(key)) as conn:
        return conn


def test_manager_starts_with_no_pools_and_no_connections(make_manager, server):
    assert make_manager().stats() == PoolStats(0, 0, 0, 0, 0, 0, 0)
    assert server.connections == []


def test_first_use_opens_and_release_keeps_it_idle(make_manager, server):
    pm = make_manager()
    with pm.connection("a", dsn("a")) as conn:
        assert conn.conninfo == "dbname=a"
        assert pm.stats() == PoolStats(
            total=1, idle=0, in_use=1, pools=1, opened=1, closed=0, evicted=0
        )
    assert pm.stats() == PoolStats(
        total=1, idle=1, in_use=0, pools=1, opened=1, closed=0, evicted=0
    )
    assert not conn.closed


def test_idle_connection_is_reused_without_asking_for_conninfo(make_manager, server):
    pm = make_manager()
    first = use(pm, "a")

    def no_conninfo() -> str:
        raise AssertionError("conninfo needed only to open a connection")

    with pm.connection("a", no_conninfo) as again:
        assert again is first
    assert len(server.connections) == 1


def test_connection_returns_to_pool_when_block_raises(make_manager):
    pm = make_manager()
    with pytest.raises(ValueError), pm.connection("a", dsn("a")):
        raise ValueError("caller's own error")
    assert pm.stats().idle == 1 and pm.stats().in_use == 0


def test_per_tenant_cap_makes_the_next_caller_time_out(make_manager):
    pm = make_manager(max_total=10, max_per_tenant=2)
    with pm.connection("a", dsn("a")), pm.connection("a", dsn("a")):
        with pytest.raises(PoolTimeout), pm.connection("a", dsn("a")):
            pass
        with pm.connection("b", dsn("b")):  # another tenant is not held back
            assert pm.stats().total == 3


def test_process_cap_makes_the_next_caller_time_out(make_manager, server):
    pm = make_manager(max_total=2, max_per_tenant=2)
    with pm.connection("a", dsn("a")), pm.connection("b", dsn("b")):
        with pytest.raises(PoolTimeout), pm.connection("c", dsn("c")):
            pass
        assert pm.stats().total == 2
    assert len(server.connections) == 2


def test_an_exhausted_pool_reaches_the_caller_as_unavailable_with_a_safe_detail(make_manager):
    """What a gRPC caller gets when the pool is full: UNAVAILABLE (retryable, not INTERNAL),
    with the pool's own detail and nothing of the connection string."""
    pm = make_manager(max_total=1, acquire_timeout=0.05)
    with pm.connection("a", dsn("a")):
        with pytest.raises(PoolTimeout) as info, pm.connection("b", dsn("b")):
            pass
    code, detail = status_for(info.value)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert detail == "no database connection available; retry later"


def test_timeout_comes_no_sooner_than_the_acquire_timeout(make_manager):
    """The lower bound only: an upper one would measure the machine's load (a waiter that
    is never woken is caught by the tests below and by pytest-timeout)."""
    pm = make_manager(max_total=1, acquire_timeout=0.2)
    with pm.connection("a", dsn("a")):
        started = time.monotonic()
        with pytest.raises(PoolTimeout), pm.connection("a", dsn("a")):
            pass
        assert time.monotonic() - started >= 0.2


def test_at_process_cap_least_recently_used_tenants_idle_connection_is_evicted(make_manager):
    pm = make_manager(max_total=2, max_per_tenant=2)
    a = use(pm, "a")
    b = use(pm, "b")
    assert use(pm, "a") is a  # "a" is now more recently used than "b"
    c = use(pm, "c")
    assert b.closed and not a.closed and not c.closed
    stats = pm.stats()
    assert (stats.total, stats.idle, stats.pools, stats.evicted, stats.closed) == (2, 2, 2, 1, 1)


def test_eviction_never_takes_a_connection_in_use(make_manager):
    pm = make_manager(max_total=2, max_per_tenant=2)
    with pm.connection("a", dsn("a")) as a:
        use(pm, "b")
        use(pm, "c")  # evicts b's idle connection, not a's busy one
        assert not a.closed
        assert pm.stats().in_use == 1


def test_waiter_is_woken_when_a_connection_is_released(make_manager):
    """Woken by the release, not by its timeout: the waiter would wait an hour, and the
    test gives it ten seconds."""
    pm = make_manager(max_total=1, acquire_timeout=3600)
    got: list[str] = []

    def other_tenant() -> None:
        with pm.connection("b", dsn("b")):
            got.append("b")

    with pm.connection("a", dsn("a")):
        waiter = threading.Thread(target=other_tenant, daemon=True)
        waiter.start()
        eventually(lambda: waiting(pm) == 1, timeout=10)
        assert got == []  # still waiting: the only slot is in use
    waiter.join(10)
    assert got == ["b"] and not waiter.is_alive()


def test_reap_closes_only_connections_idle_longer_than_idle_seconds(make_manager):
    pm = make_manager(idle_seconds=60)
    old = use(pm, "a")
    cutoff = time.monotonic()  # "a" went idle no later than this
    eventually(lambda: time.monotonic() > cutoff, interval=0)  # "b" goes idle after it
    young = use(pm, "b")
    assert pm.reap(now=cutoff + 60) == 1
    assert old.closed and not young.closed
    stats = pm.stats()
    assert (stats.total, stats.idle, stats.pools, stats.closed) == (1, 1, 1, 1)


def test_reap_of_fresh_connections_closes_nothing(make_manager):
    pm = make_manager(idle_seconds=60)
    use(pm, "a")
    assert pm.reap() == 0
    assert pm.stats().idle == 1


def test_reap_leaves_connections_in_use_alone(make_manager):
    pm = make_manager(idle_seconds=60)
    with pm.connection("a", dsn("a")) as busy:
        assert pm.reap(now=time.monotonic() + 3600) == 0
        assert not busy.closed
    assert pm.stats().total == 1


@pytest.mark.parametrize("how", ["peer_closed", "data_pending", "broken", "closed"])
def test_dead_idle_connection_is_discarded_and_replaced(make_manager, server, how):
    pm = make_manager()
    dead = use(pm, "a")
    if how == "peer_closed":
        dead.server_terminates()
    elif how == "data_pending":
        dead.server_end.sendall(b"E")  # e.g. an admin-shutdown error notice
    elif how == "broken":
        dead.broken = True
    else:
        dead.closed = True
    fresh = use(pm, "a")
    assert fresh is not dead and dead.closed
    stats = pm.stats()
    assert (stats.total, stats.idle, stats.opened, stats.closed) == (1, 1, 2, 1)


@pytest.mark.parametrize("status", [INTRANS, INERROR])
def test_connection_left_mid_transaction_is_rolled_back_and_kept(make_manager, status):
    pm = make_manager()
    with pm.connection("a", dsn("a")) as conn:
        conn.info.transaction_status = status
    assert conn.rollbacks == 1 and not conn.closed
    assert use(pm, "a") is conn


def test_connection_whose_rollback_fails_is_discarded(make_manager):
    pm = make_manager()
    with pm.connection("a", dsn("a")) as conn:
        conn.info.transaction_status = INTRANS
        conn.rollback_fails = True
    assert conn.closed
    stats = pm.stats()
    assert (stats.total, stats.idle, stats.in_use, stats.pools, stats.closed) == (0, 0, 0, 0, 1)


def test_connection_broken_during_use_is_discarded_on_release(make_manager):
    pm = make_manager()
    with pm.connection("a", dsn("a")) as conn:
        conn.broken = True
    assert conn.closed and conn.rollbacks == 0
    assert pm.stats().total == 0


def test_drop_closes_idle_connections_of_that_key_only(make_manager):
    pm = make_manager()
    a = use(pm, "a")
    b = use(pm, "b")
    pm.drop("a")
    assert a.closed and not b.closed
    stats = pm.stats()
    assert (stats.total, stats.pools, stats.closed) == (1, 1, 1)


def test_drop_keeps_the_pool_while_a_connection_is_in_use(make_manager):
    pm = make_manager()
    with pm.connection("a", dsn("a")) as busy:
        pm.drop("a")
        assert not busy.closed and pm.stats().pools == 1
    assert pm.stats().idle == 1


def test_drop_of_unknown_key_changes_nothing(make_manager):
    pm = make_manager()
    use(pm, "a")
    before = pm.stats()
    pm.drop("never-used")
    assert pm.stats() == before


def test_close_closes_idle_and_later_released_connections(make_manager):
    pm = make_manager()
    idle = use(pm, "a")
    with pm.connection("b", dsn("b")) as busy:
        pm.close()
        assert idle.closed and not busy.closed
    assert busy.closed
    assert pm.stats().total == 0


def test_connect_failure_is_unavailable_and_restores_counters(make_manager, server):
    pm = make_manager(max_total=1)
    server.refuse = True
    with pytest.raises(Unavailable) as info, pm.connection("a", dsn("a")):
        pass
    assert not isinstance(info.value, PoolTimeout)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert pm.stats() == PoolStats(0, 0, 0, 0, 0, 0, 0)
    server.refuse = False
    use(pm, "a")  # the single slot was given back


def test_connect_failure_beside_busy_connections_gives_capacity_back(make_manager, server):
    pm = make_manager(max_total=2)
    with pm.connection("a", dsn("a")):
        server.refuse = True
        with pytest.raises(Unavailable), pm.connection("b", dsn("b")):
            pass
        server.refuse = False
        with pm.connection("b", dsn("b")):
            assert pm.stats().total == 2


def test_conninfo_failure_gives_the_slot_back(make_manager):
    pm = make_manager(max_total=1)

    def unknown_placement() -> str:
        raise InvalidArgument("unknown placement 'gone'")

    with pytest.raises(InvalidArgument), pm.connection("gone/db", unknown_placement):
        pass
    assert pm.stats().total == 0
    use(pm, "a")  # with the slot leaked this times out


def test_timeout_leaves_no_empty_pool_behind(make_manager):
    pm = make_manager(max_total=1)
    with pm.connection("a", dsn("a")):
        with pytest.raises(PoolTimeout), pm.connection("b", dsn("b")):
            pass
        assert pm.stats().pools == 1


def race_for_the_only_slot(server) -> tuple[list[str], PoolManager]:
    """`a` holds the only connection; `b` starts waiting for one; once it waits, `a`
    releases the connection and at once asks again. Returns the order in which they got
    it."""
    pools = PoolManager(
        max_total=1, max_per_tenant=1, idle_seconds=60, acquire_timeout=2, connect=server.connect
    )
    order: list[str] = []
    holder = pools.connection("a", lambda: "a")
    holder.__enter__()

    def waiter() -> None:
        with pools.connection("b", lambda: "b"):
            order.append("b")

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    eventually(lambda: waiting(pools) == 1, timeout=10)  # b waits for the only slot
    holder.__exit__(None, None, None)
    with pools.connection("a", lambda: "a"):
        order.append("a")
    t.join(5)
    return order, pools


def test_a_waiting_caller_is_not_overtaken_by_a_newcomer(server, monkeypatch):
    """Released connections go to whoever waited first, not to a caller arriving later
    (here: the releasing thread itself, which would otherwise win every time). With no
    affinity grace: otherwise whether b has waited past it is a matter of timing."""
    import ontrackio.core.db.pools as pools_module

    monkeypatch.setattr(pools_module, "AFFINITY_GRACE", 0.0)
    order, pools = race_for_the_only_slot(server)
    assert order == ["b", "a"]
    pools.close()


def test_a_warm_connection_may_pass_a_recent_waiter(server, monkeypatch):
    """Within the affinity grace, a caller reusing its database's idle connection goes
    before an older caller who would have to evict it; past the grace, FIFO again."""
    import ontrackio.core.db.pools as pools_module

    monkeypatch.setattr(pools_module, "AFFINITY_GRACE", 3600.0)  # b waits far less than that
    order, pools = race_for_the_only_slot(server)
    assert order == ["a", "b"]
    assert pools.stats().opened == 2  # b still got its turn
    pools.close()
