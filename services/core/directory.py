"""Which tenants exist, their status and placement: a short-lived cache over a lookup.

Identity answers from its control database; every other service asks identity over gRPC.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ontrackio.core.errors import FailedPrecondition, NotFound
from ontrackio.core.tenancy import validate_slug
from ontrackio.core.vocabulary import ACTIVE, LIVE_STATUSES


@dataclass(frozen=True)
class TenantInfo:
    slug: str
    status: str
    placement: str
    tier: str
    # When a `deleting` tenant's databases may be dropped (aware); None for other statuses.
    delete_after: datetime | None = None


class TenantDirectory:
    """Looks tenants up through `lookup`, caching answers for `ttl` seconds."""

    def __init__(self, lookup: Callable[[str], TenantInfo | None], ttl: float):
        self._lookup = lookup
        self._ttl = ttl
        self._cache: dict[str, tuple[float, TenantInfo | None]] = {}
        self._lock = threading.Lock()

    def get(self, slug: str) -> TenantInfo | None:
        validate_slug(slug)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(slug)
        if hit and now - hit[0] < self._ttl:
            return hit[1]
        info = self._lookup(slug)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[slug] = (now, info)
        return info

    def fresh(self, slug: str) -> TenantInfo | None:
        """The tenant as the source says now, past the cache (which then holds this answer):
        for decisions that must not rest on an answer up to `ttl` old."""
        validate_slug(slug)
        info = self._lookup(slug)
        with self._lock:
            self._cache[slug] = (time.monotonic(), info)
        return info

    def forget(self, slug: str) -> None:
        with self._lock:
            self._cache.pop(slug, None)

    def require_active(self, slug: str) -> TenantInfo:
        """The tenant, if it may be served now; NotFound / FailedPrecondition otherwise."""
        info = self.get(slug)
        if info is None or info.status not in LIVE_STATUSES:
            raise NotFound(f"tenant {slug!r} not found")
        if info.status != ACTIVE:
            raise FailedPrecondition(f"tenant {slug!r} is {info.status}")
        return info

    def require_live(self, slug: str) -> TenantInfo:
        """The tenant, if its databases exist (events are still applied while suspended)."""
        info = self.get(slug)
        if info is None or info.status not in LIVE_STATUSES:
            raise NotFound(f"tenant {slug!r} not found")
        return info
