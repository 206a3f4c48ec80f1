"""Per-tenant connection pools under one per-process cap.

Pools start empty and grow on demand up to `max_per_tenant`; connections idle longer than
`idle_seconds` are closed. The process never holds more than `max_total` connections:
when the cap is reached, an idle connection of the least recently used tenant is closed to
make room. Thousands of tenants therefore cost at most `max_total` backends per process.

A connection whose backend died (killed, server restarted) is noticed before reuse, without
a round trip: the server closes its socket, which then selects readable.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import pq

from ontrackio.core.errors import Unavailable

log = logging.getLogger(__name__)


# How long a caller waiting for a new connection lets callers with a warm one pass it.
AFFINITY_GRACE = 0.05


class PoolTimeout(Unavailable):
    """No connection could be had within the acquire timeout."""


@dataclass
class _Pool:
    idle: list[tuple[psycopg.Connection, float]] = field(default_factory=list)
    in_use: int = 0
    opening: int = 0

    @property
    def size(self) -> int:
        return len(self.idle) + self.in_use + self.opening


@dataclass(frozen=True)
class PoolStats:
    total: int
    idle: int
    in_use: int
    pools: int
    opened: int
    closed: int
    evicted: int


def _alive(conn: psycopg.Connection) -> bool:
    if conn.closed or conn.broken:
        return False
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    # An idle backend sends nothing; data or EOF means it is terminating.
    return not readable


class PoolManager:
    """Hands out connections keyed by database; thread- and greenlet-safe."""

    def __init__(
        self,
        *,
        max_total: int,
        max_per_tenant: int,
        idle_seconds: float,
        acquire_timeout: float,
        connect: Callable[[str], psycopg.Connection] | None = None,
    ):
        self.max_total = max_total
        self.max_per_tenant = max_per_tenant
        self.idle_seconds = idle_seconds
        self.acquire_timeout = acquire_timeout
        self._connect = connect or (lambda conninfo: psycopg.connect(conninfo))
        self._cond = threading.Condition()
        self._pools: OrderedDict[str, _Pool] = OrderedDict()
        self._total = 0
        self._opened = self._closed = self._evicted = 0
        self._reaper: threading.Thread | None = None
        self._ticket = 0
        self._waiting: dict[int, tuple[str, float]] = {}  # ticket -> (key, since), in order
        self._stopping = False

    # -- public ---------------------------------------------------------------------------

    @contextmanager
    def connection(self, key: str, conninfo: Callable[[], str]) -> Iterator[psycopg.Connection]:
        """A connection to database `key` for the duration of the block.

        Raises PoolTimeout when none frees up in time and Unavailable when the database
        cannot be reached. A connection left broken or mid-transaction is discarded.
        """
        conn = self._acquire(key, conninfo)
        try:
            yield conn
        finally:
            self._release(key, conn)

    def stats(self) -> PoolStats:
        with self._cond:
            idle = sum(len(p.idle) for p in self._pools.values())
            in_use = sum(p.in_use for p in self._pools.values())
            return PoolStats(
                self._total,
                idle,
                in_use,
                len(self._pools),
                self._opened,
                self._closed,
                self._evicted,
            )

    def reap(self, now: float | None = None) -> int:
        """Close connections idle longer than idle_seconds; returns how many."""
        now = time.monotonic() if now is None else now
        doomed: list[psycopg.Connection] = []
        with self._cond:
            for key in list(self._pools):
                pool = self._pools[key]
                keep = [(c, t) for c, t in pool.idle if now - t < self.idle_seconds]
                doomed += [c for c, t in pool.idle if now - t >= self.idle_seconds]
                pool.idle = keep
                if pool.size == 0:
                    del self._pools[key]
            self._total -= len(doomed)
            self._closed += len(doomed)
            if doomed:
                self._cond.notify_all()
        for conn in doomed:
            conn.close()
        return len(doomed)

    def drop(self, key: str) -> None:
        """Close every idle connection to `key` (before its database is dropped)."""
        with self._cond:
            pool = self._pools.get(key)
            doomed = [c for c, _ in pool.idle] if pool else []
            if pool:
                pool.idle = []
                if pool.size == 0:
                    del self._pools[key]
            self._total -= len(doomed)
            self._closed += len(doomed)
            self._cond.notify_all()
        for conn in doomed:
            conn.close()

    def close(self) -> None:
        self._stopping = True
        for key in list(self._pools):
            self.drop(key)

    # -- internals ------------------------------------------------------------------------

    def _start_reaper(self) -> None:
        def run() -> None:
            while not self._stopping:
                time.sleep(max(0.5, self.idle_seconds / 4))
                try:
                    self.reap()
                except Exception:  # pragma: no cover - keep the reaper alive
                    log.exception("pool reaper failed")

        self._reaper = threading.Thread(target=run, name="pool-reaper", daemon=True)
        self._reaper.start()

    def _evict_lru_idle(self, exclude: str) -> psycopg.Connection | None:
        """Take one idle connection from the least recently used other pool (lock held)."""
        for key, pool in self._pools.items():
            if key != exclude and pool.idle:
                conn, _ = pool.idle.pop(0)
                if pool.size == 0:
                    del self._pools[key]
                self._total -= 1
                self._closed += 1
                self._evicted += 1
                return conn
        return None

    def _forget_if_empty(self, key: str, pool: _Pool) -> None:
        """Drop `pool` from the table if it holds nothing (lock held)."""
        if pool.size == 0 and self._pools.get(key) is pool:
            del self._pools[key]

    def _acquire(self, key: str, conninfo: Callable[[], str]) -> psycopg.Connection:
        if self._reaper is None:
            self._start_reaper()
        deadline = time.monotonic() + self.acquire_timeout
        discard: list[psycopg.Connection] = []
        try:
            with self._cond:
                self._ticket += 1
                ticket = self._ticket
                self._waiting[ticket] = (key, time.monotonic())
                try:
                    reused = self._acquire_locked(key, ticket, deadline, discard)
                finally:
                    del self._waiting[ticket]
                    self._cond.notify_all()
        finally:
            for conn in discard:  # dead or evicted: closed outside the lock
                conn.close()
        if reused is not None:
            return reused
        return self._open(key, conninfo)

    def _older_waiter_servable(self, ticket: int, key: str) -> bool:
        """Whether someone who has waited longer should be served first (lock held).

        Connections go first come, first served rather than to whichever thread wakes
        first — with one exception that keeps connections warm: a caller that can reuse an
        idle connection of its own database may pass an older caller who would have to
        open (or evict for) a new one, unless that caller has waited AFFINITY_GRACE already.
        Without it, callers of several tenants sharing a small cap would evict each other's
        connections on every request.
        """
        mine = self._pools.get(key)
        reuse = mine is not None and bool(mine.idle)
        now = time.monotonic()
        for other, (other_key, since) in self._waiting.items():
            if other >= ticket:
                break
            pool = self._pools.get(other_key)
            if pool is not None and pool.idle:
                return True
            if (pool.size if pool else 0) < self.max_per_tenant and (
                self._total < self.max_total
                or any(k != other_key and p.idle for k, p in self._pools.items())
            ):
                if not reuse or now - since >= AFFINITY_GRACE:
                    return True
        return False

    def _acquire_locked(
        self, key: str, ticket: int, deadline: float, discard: list[psycopg.Connection]
    ) -> psycopg.Connection | None:
        """A reused connection, or None with a slot reserved to open one (lock held)."""
        while True:
            if not self._older_waiter_servable(ticket, key):
                pool = self._pools.get(key)
                if pool is None:
                    pool = self._pools[key] = _Pool()
                self._pools.move_to_end(key)
                while pool.idle:
                    conn, _ = pool.idle.pop()
                    if _alive(conn):
                        pool.in_use += 1
                        return conn
                    discard.append(conn)
                    self._total -= 1
                    self._closed += 1
                if pool.size < self.max_per_tenant:
                    if self._total < self.max_total:
                        pool.opening += 1
                        self._total += 1
                        return None
                    victim = self._evict_lru_idle(exclude=key)
                    if victim is not None:
                        discard.append(victim)
                        pool.opening += 1
                        self._total += 1
                        return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pool = self._pools.get(key)
                if pool is not None:
                    self._forget_if_empty(key, pool)
                raise PoolTimeout("no database connection available; retry later")
            self._cond.wait(remaining)

    def _open(self, key: str, conninfo: Callable[[], str]) -> psycopg.Connection:
        """Open the connection for the slot reserved in `key`'s pool."""
        pool = self._pools[key]
        try:
            conn = self._connect(conninfo())
        except BaseException as exc:
            with self._cond:  # give the reserved slot back, whatever went wrong
                pool.opening -= 1
                self._total -= 1
                self._forget_if_empty(key, pool)
                self._cond.notify_all()
            if not isinstance(exc, psycopg.Error):
                raise
            log.warning("connect to %s failed: %s", key, type(exc).__name__)
            raise Unavailable("database unavailable; retry later") from exc
        with self._cond:
            pool.opening -= 1
            pool.in_use += 1
            self._opened += 1
        return conn

    def _release(self, key: str, conn: psycopg.Connection) -> None:
        healthy = not conn.closed and not conn.broken
        if healthy and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            try:
                conn.rollback()
            except psycopg.Error:
                healthy = False
        with self._cond:
            pool = self._pools.get(key)
            if pool is None:  # cannot happen while in_use > 0; be safe
                pool = self._pools[key] = _Pool()
            pool.in_use -= 1
            keep = healthy and not self._stopping
            if keep:
                pool.idle.append((conn, time.monotonic()))
            else:
                self._total -= 1
                self._closed += 1
                if pool.size == 0:
                    del self._pools[key]
            self._cond.notify_all()
        if not keep:
            conn.close()
