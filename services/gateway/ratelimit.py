"""In-process token-bucket rate limits keyed by client address or token id, with bounded memory."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.gateway.problems import ProblemResponse, problem


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int = 0  # whole seconds until one token is back; 0 when allowed


class TokenBucketLimiter:
    """``rate`` tokens per second up to ``burst``.

    At most ``max_keys`` buckets, least recently used evicted.

    Evicting a bucket forgets its debt: under a flood of more than ``max_keys`` distinct keys a
    key may get a fresh burst. That is the price of bounded memory; per-process limits are a
    first line, not the only one. Not thread-safe: one event loop per process.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be > 0, burst >= 1, max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def hit(self, key: str, cost: float = 1.0) -> RateDecision:
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if allowed:
            return RateDecision(True)
        return RateDecision(False, max(1, math.ceil((cost - tokens) / self.rate)))


def client_ip_key(scope: Scope) -> str | None:
    """Rate-limit key for ``state["client_ip"]``: the IPv4 address, or the IPv6 /64 (one subscriber
    usually owns a whole /64, so per-address limits would be free to dodge). None when unknown."""
    ip = scope.get("state", {}).get("client_ip")
    if ip is None:
        return None
    if isinstance(ip, IPv6Address):
        return str(IPv6Network((ip, 64), strict=False))
    return str(ip)


def token_id_key(scope: Scope) -> str | None:
    """Rate-limit key for an authenticated token.

    Uses ``state["token_id"]``, set after verification only.
    """
    token_id = scope.get("state", {}).get("token_id")
    return f"token:{token_id}" if token_id else None


def too_many_requests(retry_after: int) -> ProblemResponse:
    return problem(429, detail="Too many requests.", headers={"Retry-After": str(retry_after)})


class RateLimitMiddleware:
    """429 problem with Retry-After when ``limiter`` refuses ``key(scope)``.

    Requests without a key pass.
    """

    def __init__(
        self, app: ASGIApp, *, limiter: TokenBucketLimiter, key: Callable[[Scope], str | None]
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = self.key(scope)
            if key is not None:
                decision = self.limiter.hit(key)
                if not decision.allowed:
                    await too_many_requests(decision.retry_after)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
