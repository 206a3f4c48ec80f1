"""The hardened edge: every gateway middleware composed in order around the application."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.gateway.allowlist import AdminAllowlistMiddleware, OnDenied
from ontrackio.gateway.client_ip import ClientIPMiddleware, IPAddress, IPNetwork
from ontrackio.gateway.headers import SecurityHeadersMiddleware
from ontrackio.gateway.hosts import ResolveTenant, TenantHostMiddleware, TenantInfo
from ontrackio.gateway.limits import BodyLimitMiddleware
from ontrackio.gateway.path_guard import PathGuardMiddleware
from ontrackio.gateway.problems import ProblemGuardMiddleware
from ontrackio.gateway.ratelimit import RateLimitMiddleware, TokenBucketLimiter, client_ip_key
from ontrackio.gateway.securitytxt import SecurityTxtMiddleware
from ontrackio.gateway.settings import GatewaySettings


class _RefuseWebSockets:
    # Nothing behind the gateway speaks WebSocket yet; refusing beats skipping the edge checks.
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


def build_edge(
    app: ASGIApp,
    settings: GatewaySettings,
    *,
    resolve_tenant: ResolveTenant,
    get_allowlist: Callable[[TenantInfo], Awaitable[Sequence[IPNetwork]]],
    on_admin_denied: OnDenied | None = None,
) -> ASGIApp:
    """Wrap ``app`` in the edge, outermost first:

    problem guard -> security headers -> websocket refusal -> client IP (400 for a bad
    X-Forwarded-For from a trusted proxy) -> per-IP rate limit -> path guard (400 for dot
    segments, backslashes, encoded slashes, controls, look-alikes) -> security.txt ->
    tenant by Host -> admin allowlist (conservative, before routing) -> body size -> app.
    Bodies are parsed by each operation per its declared kind (api/bodies.py), and each
    admin operation applies the allowlist again on the route that matched.

    The rate limit comes before the tenant look-up so floods never reach identity; the path
    guard comes after it (refused paths still spend the address's budget) and before anything
    that reads the path (security.txt, the allowlist's admin check, the router). Routes read
    ``request.state.tenant`` (TenantInfo), ``.client_ip`` (IPv4Address | IPv6Address | None)
    and ``.host``; see ``tenant_of`` and ``client_ip_of``.
    """
    inner: ASGIApp = BodyLimitMiddleware(app, max_bytes=settings.max_body_bytes)
    inner = AdminAllowlistMiddleware(inner, get_allowlist=get_allowlist, on_denied=on_admin_denied)
    inner = TenantHostMiddleware(
        inner, base_domain=settings.base_domain, resolve_tenant=resolve_tenant
    )
    security_txt = settings.security_txt()
    if security_txt is not None:
        inner = SecurityTxtMiddleware(inner, text=security_txt)
    inner = PathGuardMiddleware(inner)
    ip_limiter = TokenBucketLimiter(
        settings.rate_limit_ip_per_second,
        settings.rate_limit_ip_burst,
        max_keys=settings.rate_limit_max_keys,
    )
    inner = RateLimitMiddleware(inner, limiter=ip_limiter, key=client_ip_key)
    inner = ClientIPMiddleware(inner, trusted_proxies=settings.trusted_proxies)
    inner = _RefuseWebSockets(inner)
    inner = SecurityHeadersMiddleware(inner, hsts_max_age=settings.hsts_max_age)
    return ProblemGuardMiddleware(inner)


def token_limiter(settings: GatewaySettings) -> TokenBucketLimiter:
    """The per-token limiter; use after authentication: ``limiter.hit(f"token:{token_id}")``."""
    return TokenBucketLimiter(
        settings.rate_limit_token_per_second,
        settings.rate_limit_token_burst,
        max_keys=settings.rate_limit_max_keys,
    )


def tenant_of(connection: HTTPConnection) -> TenantInfo:
    """The request's tenant; always set behind the edge (unknown hosts never reach routes)."""
    tenant: Any = connection.state.tenant
    return tenant


def client_ip_of(connection: HTTPConnection) -> IPAddress | None:
    """The client address as decided by ClientIPMiddleware (None only for unix-socket peers)."""
    ip: IPAddress | None = connection.state.client_ip
    return ip
