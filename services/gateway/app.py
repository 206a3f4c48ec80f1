"""The gateway application: routes behind the hardened edge, probes in front, one per worker.

``create_app()`` is the uvicorn factory (called once in each worker process). Infrastructure
(gRPC channels, the invalidation listener) starts in the lifespan, inside the worker's loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.core import config, tls
from ontrackio.core import events as ev
from ontrackio.gateway.allowlists import Allowlists
from ontrackio.gateway.api.catalogue import OPERATIONS
from ontrackio.gateway.api.endpoint import Checks
from ontrackio.gateway.api.operation import PUBLIC, Operation
from ontrackio.gateway.api.router import routes_for
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth.bearer import Authenticator
from ontrackio.gateway.auth.session import SessionChecker
from ontrackio.gateway.client_ip import is_trusted, parse_ip
from ontrackio.gateway.edge import build_edge, token_limiter
from ontrackio.gateway.headers import SecurityHeadersMiddleware
from ontrackio.gateway.invalidation import InvalidationListener
from ontrackio.gateway.openapi import document
from ontrackio.gateway.problems import ProblemGuardMiddleware, install_problem_handlers, problem
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.gateway.refusals import RefusalReporter
from ontrackio.gateway.request_id import RequestIdMiddleware
from ontrackio.gateway.settings import GatewaySettings, load_settings
from ontrackio.gateway.tenants import TenantRouter
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.gateway.upstream import Upstream

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
# Opaque per-process id shown by /healthz: tests and operators can tell workers apart.
WORKER_ID = secrets.token_hex(4)


@dataclass
class Gateway:
    """Everything one worker process holds; built by ``build_gateway``.

    ``sessions`` None (some unit tests): every session operation answers 401.
    """

    settings: GatewaySettings
    core: config.Settings
    upstream: Upstream
    router: TenantRouter
    auth: Authenticator
    allowlists: Allowlists
    token_limiter: TokenBucketLimiter
    refusals: RefusalReporter
    sessions: SessionChecker | None = None
    listener: InvalidationListener | None = None

    @property
    def services(self) -> Services:
        """What operation handlers are given."""
        return Services(
            self.upstream, self.auth, self.allowlists, self.sessions, self.settings, self.core
        )

    @property
    def checks(self) -> Checks:
        """What the endpoint wrapper admits requests with."""
        return Checks(
            tokens=self.auth,
            principal_limiter=self.token_limiter,
            get_allowlist=self.allowlists.for_tenant,
            sessions=self.sessions,
            max_json_depth=self.settings.max_json_depth,
            refusals=self.refusals,
            csrf_key=self.core.token_hash_key.get_secret_value().encode(),
            public_scheme=self.settings.browser_scheme,
        )

    # -- invalidation (runs on the worker's event loop) -------------------------------------

    def on_event(self, event: ev.Event) -> None:
        if event.type == "identity.token_revoked":
            self.auth.forget(event.tenant, event.message().token_id)
        elif event.type == "identity.allowlist_changed":
            self.allowlists.forget(event.tenant)
        elif event.type == "identity.sessions_revoked" and self.sessions is not None:
            message = event.message()
            self.sessions.forget(event.tenant, list(message.session_ids), message.user_id)

    def on_reset(self) -> None:
        self.auth.cache.clear()
        self.allowlists.cache.clear()
        if self.sessions is not None:
            self.sessions.cache.clear()

    async def start(self) -> None:
        self.upstream.start()
        self.listener = InvalidationListener(
            self.core.amqp_url.get_secret_value(),
            asyncio.get_running_loop(),
            self.on_event,
            self.on_reset,
        )
        self.listener.start()
        if not await asyncio.to_thread(self.listener.bound.wait, 15.0):
            log.warning("invalidation queue not bound yet; relying on cache TTLs until it is")
        _mark_ready(True)

    async def stop(self) -> None:
        _mark_ready(False)
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)
        await self.refusals.drain()
        await self.upstream.close()


def _ready_marker() -> Path | None:
    ready_dir = os.environ.get("ONTRACK_READY_DIR")
    return Path(ready_dir, f"gateway-worker-{os.getpid()}.ready") if ready_dir else None


def _mark_ready(ready: bool) -> None:
    marker = _ready_marker()
    if marker is not None:
        if ready:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)


def build_gateway(settings: GatewaySettings, core: config.Settings) -> Gateway:
    upstream = Upstream(
        {s: core.grpc_target(s) for s in ("identity", "inventory")},
        settings.upstream_deadline_seconds,
        tls.load(core, "gateway"),
    )
    neg = settings.negative_cache_seconds
    size = settings.cache_max_entries
    auth = Authenticator(
        upstream,
        core.token_hash_key.get_secret_value().encode(),
        TTLCache(settings.token_cache_seconds, negative_ttl=neg, max_entries=size),
        lookup_limiter=TokenBucketLimiter(
            settings.token_lookup_per_second,
            settings.token_lookup_burst,
            max_keys=settings.rate_limit_max_keys,
        ),
        touch_seconds=settings.token_touch_seconds,
    )
    sessions = SessionChecker(
        upstream,
        core.token_hash_key.get_secret_value().encode(),
        TTLCache(settings.session_cache_seconds, negative_ttl=neg, max_entries=size),
        lookup_limiter=TokenBucketLimiter(
            settings.token_lookup_per_second,
            settings.token_lookup_burst,
            max_keys=settings.rate_limit_max_keys,
        ),
    )
    return Gateway(
        settings,
        core,
        upstream,
        TenantRouter(
            upstream, TTLCache(settings.tenant_cache_seconds, negative_ttl=neg, max_entries=size)
        ),
        auth,
        Allowlists(upstream, TTLCache(settings.allowlist_cache_seconds, max_entries=size)),
        token_limiter(settings),
        RefusalReporter(upstream),
        sessions,
    )


# -- probes and metrics (before the edge: no tenant host needed) ------------------------------


async def healthz(gw: Gateway) -> Response:
    return JSONResponse({"status": "ok", "worker": WORKER_ID})


async def readyz(gw: Gateway) -> Response:
    if await gw.upstream.identity_ready(timeout=1.0):
        return JSONResponse({"status": "ready", "worker": WORKER_ID})
    return problem(503, detail="Identity is not reachable.", headers={"Retry-After": "1"})


def metrics_registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class Probes:
    """GET/HEAD /healthz and /readyz for any Host; /metrics only for socket peers in
    ``metrics_allow`` that are not trusted proxies and sent no X-Forwarded-For (so it is never
    reachable through a proxy); everything else goes to the edge."""

    def __init__(self, app: ASGIApp, gw: Gateway) -> None:
        self.app = app
        self.gw = gw

    def _metrics_allowed(self, scope: Scope) -> bool:
        client = scope.get("client")
        peer = parse_ip(client[0]) if client else None
        if peer is None or is_trusted(peer, self.gw.settings.trusted_proxies):
            return False
        if any(k.lower() in (b"x-forwarded-for", b"forwarded") for k, _ in scope["headers"]):
            return False
        return is_trusted(peer, self.gw.settings.metrics_allow)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
            response: Response | None = None
            if path in (b"/healthz", b"/readyz"):
                response = await (healthz if path == b"/healthz" else readyz)(self.gw)
            elif path == b"/metrics" and self._metrics_allowed(scope):
                response = Response(
                    generate_latest(metrics_registry()), media_type=CONTENT_TYPE_LATEST
                )
            if response is not None:
                if scope["method"] not in ("GET", "HEAD"):
                    response = problem(405, headers={"Allow": "GET, HEAD"})
                response.headers["Cache-Control"] = "no-store"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def openapi_document() -> dict[str, Any]:
    probes = [
        Operation(
            "GET",
            "/healthz",
            "healthz",
            "The worker process is up (any Host).",
            healthz,
            PUBLIC,
            {"type": "object"},
            error_codes=(),
        ),
        Operation(
            "GET",
            "/readyz",
            "readyz",
            "Identity is reachable (any Host).",
            readyz,
            PUBLIC,
            {"type": "object"},
            error_codes=(503,),
        ),
        Operation(
            "GET",
            "/openapi.json",
            "openapi",
            "This document.",
            healthz,
            PUBLIC,
            {"type": "object"},
            error_codes=(),
        ),
    ]
    return document(OPERATIONS + probes, title="OnTrackio API", version=API_VERSION)


def build_app(gw: Gateway) -> ASGIApp:
    spec = openapi_document()
    routes = [Route("/openapi.json", lambda request: JSONResponse(spec), methods=["GET"])]
    routes += routes_for(OPERATIONS, gw.checks, gw.services)

    @asynccontextmanager
    async def lifespan(app):
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    install_problem_handlers(app)
    edge = build_edge(
        app,
        gw.settings,
        resolve_tenant=gw.router.resolver(gw.settings.base_domain),
        get_allowlist=gw.allowlists.for_tenant,
        on_admin_denied=gw.checks.on_admin_denied,
    )
    # Outermost: every response, the guard's own problems included, names its request.
    return RequestIdMiddleware(
        ProblemGuardMiddleware(
            SecurityHeadersMiddleware(Probes(edge, gw), hsts_max_age=gw.settings.hsts_max_age)
        )
    )


def create_app() -> ASGIApp:
    """uvicorn factory: settings from the environment, one Gateway per worker process."""
    return build_app(build_gateway(load_settings(), config.settings()))
