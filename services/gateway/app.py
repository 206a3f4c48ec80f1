"""The gateway application: routes behind the hardened edge, probes in front, one per worker.

``create_app()`` is the uvicorn factory (called once in each worker process). Infrastructure
(gRPC channels, the invalidation listener) starts in the lifespan, inside the worker's loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.core import config, tls
from ontrackio.core import events as ev
from ontrackio.gateway.allowlists import Allowlists
from ontrackio.gateway.auth import Authenticator, Failure, forbidden_scope, refusal
from ontrackio.gateway.client_ip import is_trusted, parse_ip
from ontrackio.gateway.edge import build_edge, client_ip_of, tenant_of, token_limiter
from ontrackio.gateway.headers import SecurityHeadersMiddleware
from ontrackio.gateway.invalidation import InvalidationListener
from ontrackio.gateway.openapi import Invalid, Operation, document, validate
from ontrackio.gateway.problems import (
    ProblemGuardMiddleware,
    install_problem_handlers,
    problem,
    problem_from_rpc_error,
)
from ontrackio.gateway.ratelimit import TokenBucketLimiter, too_many_requests
from ontrackio.gateway.routes import OPERATIONS, Call
from ontrackio.gateway.settings import GatewaySettings, load_settings
from ontrackio.gateway.tenants import TenantRouter
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.gateway.upstream import Upstream

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
_INTEGER = re.compile(r"-?[0-9]{1,10}\Z")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
# Opaque per-process id shown by /healthz: tests and operators can tell workers apart.
WORKER_ID = secrets.token_hex(4)


@dataclass
class Gateway:
    """Everything one worker process holds; built by ``build_gateway``."""

    settings: GatewaySettings
    core: config.Settings
    upstream: Upstream
    router: TenantRouter
    auth: Authenticator
    allowlists: Allowlists
    token_limiter: TokenBucketLimiter
    listener: InvalidationListener | None = None

    # -- invalidation (runs on the worker's event loop) -------------------------------------

    def on_event(self, event: ev.Event) -> None:
        if event.type == "identity.token_revoked":
            self.auth.forget(event.tenant, event.message().token_id)
        elif event.type == "identity.allowlist_changed":
            self.allowlists.forget(event.tenant)

    def on_reset(self) -> None:
        self.auth.cache.clear()
        self.allowlists.cache.clear()

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
    )


# -- endpoints --------------------------------------------------------------------------------


def _query(op: Operation, request: Request) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in op.params:
        if p.where == "path":
            params[p.name] = validate(request.path_params[p.name], p.schema, p.name)
            continue
        values = request.query_params.getlist(p.name)
        if not values:
            continue
        if len(values) > 1:
            raise Invalid(f"{p.name} may be given once")
        raw: Any = values[0]
        kind = p.schema.get("type")
        if kind == "integer":
            if not _INTEGER.match(raw):
                raise Invalid(f"{p.name} must be an integer")
            raw = int(raw)
        elif kind == "boolean":
            if raw.lower() not in _BOOLEANS:
                raise Invalid(f"{p.name} must be true or false")
            raw = _BOOLEANS[raw.lower()]
        params[p.name] = validate(raw, p.schema, p.name)
    return params


_NO_BODY = object()


def _body(op: Operation, request: Request) -> Any:
    if op.body is None:
        return None
    data = request.scope.get("state", {}).get("json", _NO_BODY)
    if data is _NO_BODY:
        return _NO_BODY
    return validate(data, op.body, "body")


def endpoint(op: Operation, gw: Gateway):
    async def run(request: Request) -> Response:
        tenant = tenant_of(request).slug
        client_ip = client_ip_of(request)
        actor = None
        if op.scope is not None:
            authorization = request.headers.getlist("authorization")
            result = (
                Failure.MALFORMED
                if len(authorization) > 1
                else await gw.auth.authenticate(
                    authorization[0] if authorization else None, tenant, client_ip
                )
            )
            if isinstance(result, Failure):
                return refusal(result)
            if op.scope not in result.scopes:
                return forbidden_scope(op.scope)
            decision = gw.token_limiter.hit(f"token:{result.token_id}")
            if not decision.allowed:
                return too_many_requests(decision.retry_after)
            actor = result.actor
        try:
            params = _query(op, request)
            body = _body(op, request)
        except Invalid as exc:
            return problem(400, detail=str(exc))
        if body is _NO_BODY:
            return problem(415, detail="A JSON body (Content-Type: application/json) is required.")
        call = Call(
            gw.upstream,
            tenant,
            actor,
            client_ip,
            params,
            body,
            on_token_revoked=gw.auth.forget,
            on_allowlist_changed=gw.allowlists.forget,
        )
        try:
            result = await op.handler(call)
        except grpc.aio.AioRpcError as exc:
            return problem_from_rpc_error(exc)
        if isinstance(result, Response):
            return result
        data, headers = result if isinstance(result, tuple) else (result, {})
        return JSONResponse(data, status_code=op.status, headers=headers)

    run.__name__ = op.operation_id
    return run


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
            None,
            {"type": "object"},
            errors=(),
        ),
        Operation(
            "GET",
            "/readyz",
            "readyz",
            "Identity is reachable (any Host).",
            readyz,
            None,
            {"type": "object"},
            errors=(503,),
        ),
        Operation(
            "GET",
            "/openapi.json",
            "openapi",
            "This document.",
            healthz,
            None,
            {"type": "object"},
            errors=(),
        ),
    ]
    return document(OPERATIONS + probes, title="OnTrackio API", version=API_VERSION)


def build_app(gw: Gateway) -> ASGIApp:
    spec = openapi_document()
    by_path: dict[str, list[Operation]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, []).append(op)
    routes = [Route("/openapi.json", lambda request: JSONResponse(spec), methods=["GET"])]
    for path, ops in by_path.items():
        handlers = {op.method: endpoint(op, gw) for op in ops}

        async def dispatch(request: Request, handlers=handlers) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await handlers[method](request)

        routes.append(Route(path, dispatch, methods=list(handlers)))

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
    )
    return ProblemGuardMiddleware(
        SecurityHeadersMiddleware(Probes(edge, gw), hsts_max_age=gw.settings.hsts_max_age)
    )


def create_app() -> ASGIApp:
    """uvicorn factory: settings from the environment, one Gateway per worker process."""
    return build_app(build_gateway(load_settings(), config.settings()))
