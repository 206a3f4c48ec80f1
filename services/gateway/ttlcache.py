"""A bounded async TTL cache with single-flight loads, negative answers and safe invalidation.

Used for tenants by host, token records and allowlists: one look-up upstream per key per TTL
however many requests arrive at once. An invalidation during a load keeps that load's (maybe
stale) answer out of the cache. Not thread-safe: one event loop per worker process.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()


class TTLCache(Generic[V]):
    """``get(key, load)``: a fresh cached value, or ``await load()`` stored for ``ttl`` seconds
    (``negative_ttl`` when it returned None). Exceptions from ``load`` are not cached."""

    def __init__(
        self,
        ttl: float,
        *,
        negative_ttl: float | None = None,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = ttl if negative_ttl is None else negative_ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V | None]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future[V | None]] = {}
        self._generation = 0
        self.loads = 0  # upstream look-ups made (for metrics and the benchmark)

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: Hashable) -> object:
        """The fresh cached value (may be None) or ``MISSING``; never loads."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        return _MISSING

    def cached(self, key: Hashable) -> bool:
        return self.peek(key) is not _MISSING

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V | None]]) -> V | None:
        value = self.peek(key)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        generation = self._generation
        try:
            self.loads += 1
            value = await load()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must log it
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]
        if generation == self._generation:
            self._store(key, value)
        future.set_result(value)
        return value

    def _store(self, key: Hashable, value: V | None) -> None:
        ttl = self.ttl if value is not None else self.negative_ttl
        self._entries.pop(key, None)
        self._entries[key] = (self.clock() + ttl, value)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    @property
    def generation(self) -> int:
        """Moves on at every invalidation: a value loaded before it may be stale."""
        return self._generation

    def put(self, key: Hashable, value: V | None, *, if_generation: int | None = None) -> None:
        """Store ``value``; with ``if_generation``, only if nothing was invalidated since that
        generation (a reply must not resurrect an entry an event dropped meanwhile)."""
        if if_generation is None or if_generation == self._generation:
            self._store(key, value)

    def items(self) -> list[tuple[Hashable, V | None]]:
        """The fresh entries (a snapshot)."""
        now = self.clock()
        return [(k, v) for k, (expires, v) in self._entries.items() if expires > now]

    def invalidate(self, key: Hashable) -> None:
        self._generation += 1
        self._entries.pop(key, None)
        self._inflight.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._inflight.clear()


MISSING = _MISSING
