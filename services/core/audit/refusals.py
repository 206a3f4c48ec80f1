"""Refused attempts reported by other processes (the gateway): what is accepted, how often.

A refusal is an audit entry with outcome "refused". Reports arrive from the edge, where an
attacker can cause as many as they like, so each tenant gets a token bucket (``rate`` per
second up to ``burst``); beyond it a report is dropped and counted, never queued. Pure
rules and a thread-safe limiter: no database, no gRPC.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ontrackio.core.audit.log import Entry, Origin, clean

ACTIONS = ("allowlist.denied", "scope.denied", "token.refused", "role.denied", "csrf.refused")
# An API token or a signed-in user, as the gateway names them.
EDGE_ACTOR = re.compile(
    r"(token:[0-9a-f]{24}|user:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\Z"
)


class BadRefusal(ValueError):
    """A report names an unknown action or an actor that is no token or user id."""


def entry(action: str, actor: str, target: str, reason: str, origin: Origin) -> Entry:
    """The audit entry of one reported refusal (BadRefusal for a malformed report)."""
    if action not in ACTIONS:
        raise BadRefusal(f"action must be one of {', '.join(ACTIONS)}")
    if actor and not EDGE_ACTOR.match(actor):
        raise BadRefusal("actor must be token:<id>, user:<id> or empty")
    return Entry(
        actor or "anonymous",
        action,
        clean(target, 200),
        None,
        {"reason": clean(reason, 200)},
        outcome="refused",
        origin=origin,
    )


class TenantRateLimit:
    """``rate`` reports per second per tenant, up to ``burst``; at most ``max_keys``
    tenants remembered (least recently seen forgotten). Thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.max_keys, self.clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        with self._lock:
            now = self.clock()
            tokens, stamp = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed
