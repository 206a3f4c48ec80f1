"""Bearer-token authentication at the gateway: cheap refusals first, cached records, constant time.

Order of checks, cheapest first, so a flood of bad tokens costs no round trip: header syntax →
token syntax → the id's keyed checksum (a forged id never reaches identity) → per-address
look-up budget (only for ids not cached) → cached record (identity's LookupToken on a miss,
negative answers cached too) → tenant, secret (hmac.compare_digest), revocation, expiry, CIDRs.
Every failure is the same 401; only a missing scope is a 403. Last use is reported to identity
at most once per ``touch_seconds`` per token, in the background.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum

import grpc
from prometheus_client import Counter

from ontrackio.core import addresses
from ontrackio.gateway.allowlist import is_allowed
from ontrackio.gateway.auth.use_reports import UseReporter
from ontrackio.gateway.client_ip import IPAddress, IPNetwork
from ontrackio.gateway.hosts import TenantNotServed
from ontrackio.gateway.problems import ProblemResponse, problem
from ontrackio.gateway.ratelimit import TokenBucketLimiter, too_many_requests
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.gateway.upstream import Upstream
from ontrackio.identity import access_tokens as tokens
from ontrackio.identity.v1 import access_pb2 as apb

log = logging.getLogger(__name__)

AUTH_FAILURES = Counter(
    "ontrack_gateway_auth_failures", "Requests refused by authentication.", ["reason"]
)


class Failure(Enum):
    MISSING = "missing"
    MALFORMED = "malformed"
    FORGED = "forged"
    UNKNOWN = "unknown"
    OTHER_TENANT = "other_tenant"
    SECRET = "secret"
    REVOKED = "revoked"
    EXPIRED = "expired"
    ADDRESS = "address"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class TokenRecord:
    """What the gateway keeps of one token."""

    id: str
    tenant: str
    scopes: frozenset[str]
    networks: tuple[IPNetwork, ...]
    expires_at: float | None  # POSIX seconds
    revoked: bool
    secret_hash: bytes


@dataclass(frozen=True)
class Principal:
    token_id: str
    tenant: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"


def record_from_pb(r: apb.TokenRecord) -> TokenRecord:
    t = r.token
    return TokenRecord(
        id=t.id,
        tenant=r.tenant,
        scopes=frozenset(t.scopes),
        networks=tuple(addresses.parse_cidrs(t.cidrs)),
        expires_at=t.expires_at.ToNanoseconds() / 1e9 if t.HasField("expires_at") else None,
        revoked=t.HasField("revoked_at"),
        secret_hash=bytes(r.secret_hash),
    )


# One body for every 401, whatever the reason: nothing tells a prober which check failed.
UNAUTHORIZED_DETAIL = "A valid API token is required."


def unauthorized() -> ProblemResponse:
    return problem(
        401, detail=UNAUTHORIZED_DETAIL, headers={"WWW-Authenticate": 'Bearer realm="ontrack"'}
    )


def forbidden_scope(scope: str) -> ProblemResponse:
    return problem(
        403,
        detail=f"This token lacks the {scope!r} scope.",
        headers={
            "WWW-Authenticate": 'Bearer realm="ontrack", error="insufficient_scope", '
            f'scope="{scope}"'
        },
    )


class Authenticator:
    def __init__(
        self,
        upstream: Upstream,
        key: bytes,
        cache: TTLCache[TokenRecord],
        *,
        lookup_limiter: TokenBucketLimiter,
        touch_seconds: float,
        clock=time.time,
    ) -> None:
        self.upstream = upstream
        self.key = key
        self.cache = cache
        self.lookup_limiter = lookup_limiter
        self.clock = clock
        self.uses = UseReporter(self._send_touch, touch_seconds, cache.max_entries)

    async def authenticate(
        self, authorization: str | None, tenant: str, client_ip: IPAddress | None
    ) -> Principal | Failure:
        result = await self._check(authorization, tenant, client_ip)
        if isinstance(result, Failure):
            AUTH_FAILURES.labels(result.value).inc()
        return result

    async def _check(
        self, authorization: str | None, tenant: str, client_ip: IPAddress | None
    ) -> Principal | Failure:
        if not authorization:
            return Failure.MISSING
        scheme, _, bearer = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return Failure.MALFORMED
        parts = tokens.split_bearer(bearer.strip())
        if parts is None:
            return Failure.MALFORMED
        token_id, secret = parts
        if not tokens.id_is_genuine(self.key, token_id):
            return Failure.FORGED
        key = (tenant, token_id)
        if not self.cache.cached(key):
            budget = f"lookup:{client_ip}"
            if not self.lookup_limiter.hit(budget).allowed:
                return Failure.THROTTLED
        record = await self.cache.get(key, lambda: self._lookup(tenant, token_id))
        if record is None:
            return Failure.UNKNOWN
        if record.tenant != tenant:
            return Failure.OTHER_TENANT
        if not tokens.secret_matches(self.key, token_id, secret, record.secret_hash):
            return Failure.SECRET
        if record.revoked:
            return Failure.REVOKED
        if record.expires_at is not None and self.clock() >= record.expires_at:
            return Failure.EXPIRED
        if not is_allowed(client_ip, record.networks):
            return Failure.ADDRESS
        self.uses.used(tenant, token_id, client_ip)
        return Principal(token_id, tenant, record.scopes)

    async def _lookup(self, tenant: str, token_id: str) -> TokenRecord | None:
        try:
            reply = await self.upstream.call(
                self.upstream.access.LookupToken, apb.LookupTokenRequest(id=token_id), tenant=tenant
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
        return record_from_pb(reply)

    def forget(self, tenant: str, token_id: str) -> None:
        self.cache.invalidate((tenant, token_id))

    async def _send_touch(self, tenant: str, token_id: str, address: str) -> bool:
        try:
            await self.upstream.call(
                self.upstream.access.TouchToken,
                apb.TouchTokenRequest(id=token_id, address=address),
                tenant=tenant,
            )
        except grpc.aio.AioRpcError as exc:  # best effort: the next use tries again
            log.info("recording use of token %s failed: %s", token_id, exc.code().name)
            return False
        except TenantNotServed:  # suspended meanwhile: nothing to record
            return False
        return True


def refusal(failure: Failure) -> ProblemResponse:
    if failure is Failure.THROTTLED:
        return too_many_requests(1)
    return unauthorized()
