"""Tenant routing wired to identity: GetTenant by slug, ResolveDomain for custom domains, cached.

Unknown answers are cached too (negative TTL), so a stream of made-up hosts costs identity one
look-up per host per TTL at most. Only active tenants are served; suspended ones are marked so
the edge answers them with the same 404 as unknown hosts; anything else is unknown.
"""

from __future__ import annotations

import grpc

from ontrackio.core.vocabulary import TIERS
from ontrackio.gateway.hosts import ResolveTenant, TenantInfo, tenant_resolver
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.gateway.upstream import Upstream
from ontrackio.identity.v1 import identity_pb2 as ipb

_TIERS = {ipb.Tier.Value(f"TIER_{t.upper()}"): t for t in TIERS}
# Not found, or not a well-formed slug/domain: the host belongs to no tenant.
_ABSENT = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


def tenant_info(t: ipb.Tenant) -> TenantInfo | None:
    if t.status == ipb.TENANT_STATUS_ACTIVE:
        return TenantInfo(t.id, t.slug, _TIERS.get(t.tier, "other"))
    if t.status == ipb.TENANT_STATUS_SUSPENDED:
        return TenantInfo(t.id, t.slug, _TIERS.get(t.tier, "other"), suspended=True)
    return None


class TenantRouter:
    def __init__(self, upstream: Upstream, cache: TTLCache[TenantInfo]) -> None:
        self.upstream = upstream
        self.cache = cache

    async def _ask(self, method, request) -> TenantInfo | None:
        try:
            return tenant_info(await self.upstream.call(method, request))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _ABSENT:
                return None
            raise

    async def by_slug(self, slug: str) -> TenantInfo | None:
        return await self.cache.get(
            ("slug", slug),
            lambda: self._ask(self.upstream.tenants.GetTenant, ipb.GetTenantRequest(slug=slug)),
        )

    async def by_domain(self, host: str) -> TenantInfo | None:
        return await self.cache.get(
            ("domain", host),
            lambda: self._ask(
                self.upstream.tenants.ResolveDomain, ipb.ResolveDomainRequest(domain=host)
            ),
        )

    def resolver(self, base_domain: str) -> ResolveTenant:
        return tenant_resolver(base_domain, by_slug=self.by_slug, by_custom_domain=self.by_domain)
