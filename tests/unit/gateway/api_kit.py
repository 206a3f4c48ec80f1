"""Tiny gateway apps for unit tests: declared operations behind the real endpoint wrapper and
router, with small real authenticators (a dict of tokens, a dict of sessions)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import ip_network
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.gateway.api.endpoint import Checks
from ontrackio.gateway.api.operation import Operation
from ontrackio.gateway.api.router import routes_for
from ontrackio.gateway.auth.bearer import Failure, Principal
from ontrackio.gateway.auth.session import SessionPrincipal
from ontrackio.gateway.client_ip import parse_ip
from ontrackio.gateway.edge import build_edge
from ontrackio.gateway.hosts import TenantInfo, tenant_resolver
from ontrackio.gateway.problems import ProblemGuardMiddleware, install_problem_handlers
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.gateway.settings import GatewaySettings
from ontrackio.identity.sessions import rules as session_rules

ACME = TenantInfo("t-1", "acme", tier="standard")
OFFICE = "192.0.2.0/24"
INSIDE = ("192.0.2.10", 40000)
OUTSIDE = ("203.0.113.7", 50000)


class DictTokens:
    """Bearer tokens from a dict ``{secret: (token_id, scopes)}``, all of tenant acme."""

    def __init__(self, tokens: dict[str, tuple[str, Sequence[str]]]) -> None:
        self.tokens = tokens

    async def authenticate(self, authorization, tenant, client_ip):
        if not authorization:
            return Failure.MISSING
        scheme, _, secret = authorization.partition(" ")
        if scheme.lower() != "bearer" or secret not in self.tokens or tenant != ACME.slug:
            return Failure.UNKNOWN
        token_id, scopes = self.tokens[secret]
        return Principal(token_id, tenant, frozenset(scopes))


CSRF_KEY = b"csrf key of the kit"


class DictSessions:
    """Sessions from a dict ``{session_id: user_id}`` (or ``{session_id: (user_id, roles)}``,
    or ``(user_id, roles, stage)``), all of tenant acme; a user's roles default to member,
    the stage to full."""

    def __init__(self, sessions: dict[str, Any]) -> None:
        self.sessions = sessions
        self.asked: list[str] = []

    async def authenticate(self, session_id, tenant, client_ip):
        self.asked.append(session_id)
        entry = self.sessions.get(session_id)
        if not entry or tenant != ACME.slug:
            return None
        user, roles, stage = (
            (*entry, "full")[:3]
            if isinstance(entry, tuple)
            else (
                entry,
                ("member",),
                "full",
            )
        )
        return SessionPrincipal(user, tenant, session_id, frozenset(roles), stage=stage)


def csrf_headers(session_id: str, origin: str = "http://acme.localhost") -> list:
    """What a browser page of the kit's tenant sends with an unsafe request."""
    return [("Origin", origin), ("X-CSRF-Token", session_rules.csrf_token(CSRF_KEY, session_id))]


TOKENS = DictTokens(
    {
        "reader": ("t-read", ["api:read"]),
        "writer": ("t-write", ["api:read", "api:write"]),
        "admin": ("t-admin", ["admin"]),
        "scim": ("t-scim", ["scim"]),
    }
)


def checks(*, sessions=None, max_json_depth: int = 32, burst: int = 10_000) -> Checks:
    async def get_allowlist(tenant):
        return [ip_network(OFFICE)]

    return Checks(
        tokens=TOKENS,
        principal_limiter=TokenBucketLimiter(1, burst),
        get_allowlist=get_allowlist,
        sessions=sessions,
        max_json_depth=max_json_depth,
        csrf_key=CSRF_KEY,
        public_scheme="http",
    )


class TenantAndAddress:
    """What the edge would leave in the scope, without the edge (so nothing before routing
    checks admin paths: only the route-level check can refuse)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.setdefault("state", {})
        state["tenant"] = ACME
        state["client_ip"] = parse_ip(scope["client"][0]) if scope.get("client") else None
        await self.app(scope, receive, send)


def tiny_app(
    operations: Sequence[Operation],
    *,
    services: Any = None,
    edge: bool = False,
    max_body_bytes: int = 10_000,
    around_router: Callable[[Starlette], ASGIApp] | None = None,
    **check_options: Any,
) -> ASGIApp:
    """The operations behind the real router and endpoint wrapper; with ``edge`` behind the
    whole real edge too (tenant ``acme.localhost``, allowlist ``OFFICE``). ``around_router``
    may wrap the Starlette app (to watch what reaches the router)."""
    starlette = Starlette(routes=routes_for(operations, checks(**check_options), services))
    install_problem_handlers(starlette)
    app: ASGIApp = around_router(starlette) if around_router else starlette
    if not edge:
        return ProblemGuardMiddleware(TenantAndAddress(app))

    async def by_slug(slug):
        return ACME if slug == "acme" else None

    async def by_domain(domain):
        return None

    async def get_allowlist(tenant):
        return [ip_network(OFFICE)]

    return build_edge(
        app,
        GatewaySettings(max_body_bytes=max_body_bytes, rate_limit_ip_burst=100_000),
        resolve_tenant=tenant_resolver("localhost", by_slug=by_slug, by_custom_domain=by_domain),
        get_allowlist=get_allowlist,
    )
