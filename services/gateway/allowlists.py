"""The admin allowlist of each tenant, as the edge needs it: identity's list, cached per tenant.

Dropped from the cache when identity announces a change (``allowlist_changed``), and after a
short TTL in case that announcement is lost. An identity failure propagates: the guard answers
503 and the admin request is refused (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence

from ontrackio.gateway.allowlist import parse_cidrs
from ontrackio.gateway.client_ip import IPNetwork
from ontrackio.gateway.hosts import TenantInfo
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.gateway.upstream import Upstream
from ontrackio.identity.v1 import access_pb2 as apb


class Allowlists:
    def __init__(self, upstream: Upstream, cache: TTLCache[tuple[IPNetwork, ...]]) -> None:
        self.upstream = upstream
        self.cache = cache

    async def _load(self, slug: str) -> tuple[IPNetwork, ...]:
        reply = await self.upstream.call(
            self.upstream.access.GetAllowlist, apb.GetAllowlistRequest(), tenant=slug
        )
        return tuple(parse_cidrs(reply.cidrs))

    async def for_tenant(self, tenant: TenantInfo) -> Sequence[IPNetwork]:
        networks = await self.cache.get(tenant.slug, lambda: self._load(tenant.slug))
        return networks or ()

    def forget(self, slug: str) -> None:
        self.cache.invalidate(slug)
