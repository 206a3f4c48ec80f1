"""The api process: a grpcio server over mutual TLS with health checking and one interceptor.

The interceptor, per call of every kind (unary, client-, server- and bidi-streaming):
continues the caller's trace; names the caller from its client certificate
(core/trust.py: none → UNAUTHENTICATED) and refuses callers the method's registration does
not allow and an ``x-ontrack-actor`` from anyone but the gateway and the CLI
(PERMISSION_DENIED); answers requests that do not parse, or carry invalid UTF-8 or NUL in
a string field, with INVALID_ARGUMENT naming the field (core/requestcheck.py); resolves the
tenant of tenant-scoped methods from the ``x-ontrack-tenant`` metadata (missing →
UNAUTHENTICATED, malformed → INVALID_ARGUMENT, unknown → NOT_FOUND, not active →
FAILED_PRECONDITION); maps domain errors to status codes through grpcstatus.status_for; and
counts and times the call. Reflection is served in development mode only. Never run
this in an eventlet-patched process.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import context as otel_context
from opentelemetry import trace

from ontrackio.core import metrics, telemetry, tls, trust
from ontrackio.core.config import Settings
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.errors import DomainError
from ontrackio.core.grpcstatus import status_for
from ontrackio.core.requestcheck import BadRequest, checked
from ontrackio.core.tenancy import SLUG_RE
from ontrackio.core.v1 import core_pb2, core_pb2_grpc

log = logging.getLogger(__name__)

TENANT_METADATA = "x-ontrack-tenant"
_tenant: contextvars.ContextVar[TenantInfo | None] = contextvars.ContextVar("tenant", default=None)
_caller_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)
# Trailing metadata naming a domain error's reason (core/errors.py), for callers that must
# tell one FAILED_PRECONDITION from another (the gateway's problem types).
REASON_METADATA = "ontrack-reason"
_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)  # reusable; its set_attribute does nothing
_OK = grpc.StatusCode.OK


def tenant_or_none() -> TenantInfo | None:
    """The tenant of the call being served, if any (for logs)."""
    return _tenant.get()


def current_caller() -> str:
    """The identity (core/trust.py) calling the method being served."""
    caller = _caller_var.get()
    if caller is None:  # a programming error: called outside a served call
        raise RuntimeError("no caller in this call")
    return caller


def actor_of(context) -> str:
    """Who acts, for the audit trail: the actor the gateway or the CLI named (the
    interceptor refuses it from anyone else), else ``operator``."""
    return dict(context.invocation_metadata()).get(trust.ACTOR_METADATA, "operator")[:200]


def current_tenant() -> TenantInfo:
    """The tenant of the tenant-scoped call being served."""
    info = _tenant.get()
    if info is None:  # a programming error: the method was registered as unscoped
        raise RuntimeError("no tenant in this call")
    return info


@dataclass(frozen=True)
class Registration:
    """One gRPC service to serve: its add-function, servicer, full name, and who may call
    each of its methods (every method must be named; build_server checks)."""

    add: Callable[[object, grpc.Server], None]
    servicer: object
    name: str
    tenant_scoped: bool = True
    callers: trust.Callers = field(default_factory=dict)


class PlatformInterceptor(grpc.ServerInterceptor):
    """The per-call rules of the module docstring. `callers` maps full method names
    (``/pkg.Service/Method``) to the identities allowed; a method missing from it is
    refused to everyone."""

    def __init__(
        self,
        service: str,
        directory: TenantDirectory,
        scoped: set[str],
        callers: Mapping[str, frozenset[str]],
        deployment: str,
    ):
        self._service = service
        self._directory = directory
        self._scoped = scoped
        self._callers = callers
        self._deployment = deployment
        self._tracer = telemetry.tracer("ontrackio.grpc")
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        # peer certificate SANs -> identity; few distinct peers, so bounded only loosely
        self._peers: dict[tuple[bytes, ...], str | None] = {}

    def intercept_service(self, continuation, details):
        wrapped = self._handlers.get(details.method)
        if wrapped is None:
            handler = continuation(details)
            if handler is None:
                return None
            wrapped = self._handlers[details.method] = self._wrap(details.method, handler)
        return wrapped

    def _caller(self, context) -> str | None:
        peers = context.peer_identities()
        key = tuple(peers) if peers else ()
        try:
            return self._peers[key]
        except KeyError:
            name = trust.identity_of(peers, self._deployment)
            if len(self._peers) < 1024:
                self._peers[key] = name
            return name

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        scoped = method.split("/")[1] in self._scoped
        allowed = self._callers.get(method, frozenset())
        directory, tracer = self._directory, self._tracer
        short = method.rsplit("/", 1)[1]
        seconds = metrics.GRPC_SECONDS.labels(self._service, short)
        counters = {
            code: metrics.GRPC_REQUESTS.labels(self._service, short, code.name)
            for code in grpc.StatusCode
        }
        caller_of = self._caller
        request_streaming = handler.request_streaming

        def admit(context, metadata, span) -> TenantInfo | None:
            """Who calls, may they, and for which tenant; raises _Refusal."""
            caller = caller_of(context)
            if caller is None:
                raise _Refusal(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "the client certificate names no identity of this deployment",
                )
            if caller not in allowed:
                raise _Refusal(grpc.StatusCode.PERMISSION_DENIED, f"{caller} may not call {short}")
            _caller_var.set(caller)
            if caller not in trust.ACTOR_BEARERS:
                for key in trust.EDGE_METADATA:
                    if key in metadata:
                        raise _Refusal(
                            grpc.StatusCode.PERMISSION_DENIED,
                            f"{key} is accepted only from the gateway and the CLI",
                        )
            if not scoped:
                return None
            slug = metadata.get(TENANT_METADATA)
            if not slug:
                raise _Refusal(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"missing tenant: set the {TENANT_METADATA} metadata",
                )
            if not SLUG_RE.match(slug):
                raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, "malformed tenant slug")
            span.set_attribute("ontrack.tenant", slug)
            return directory.require_active(slug)

        def request_of(request):
            if request_streaming:
                return _checked_stream(request)
            if type(request) is BadRequest:
                raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, request.detail)
            return request

        def failure_of(exc: Exception, context) -> tuple[grpc.StatusCode, str] | None:
            """The status to answer with; None when the servicer aborted the call itself.
            A domain error's reason goes with it as trailing metadata."""
            if isinstance(exc, _Refusal):
                return exc.code, exc.detail
            if isinstance(exc, DomainError):
                if exc.reason:
                    context.set_trailing_metadata(((REASON_METADATA, exc.reason),))
                return status_for(exc)
            if context.code() is not None:
                counters[context.code()].inc()
                return None
            log.exception("unhandled error in %s", method)
            return status_for(exc)

        # Whether spans are recorded is settled by the time a method is first called (the
        # process installs its provider, if any, before serving); asking OpenTelemetry on
        # every call read the environment each time, half of this wrapper's own cost.
        recording = telemetry.recording()

        def span_of():
            return (
                tracer.start_as_current_span(method, kind=trace.SpanKind.SERVER)
                if recording
                else _NO_SPAN
            )

        def attach(metadata):
            # The caller's trace context, if it sent one, becomes current (events the call
            # emits carry it); a server span only when spans are recorded. Without an
            # exporter the no-op span changed nothing but cost a third of this function.
            return (
                otel_context.attach(telemetry.extract(metadata))
                if telemetry.TRACEPARENT in metadata
                else None
            )

        def single(request, context):
            """Unary and client-streaming calls: one response."""
            started = time.perf_counter()
            metadata = dict(context.invocation_metadata())
            token = attach(metadata)
            failure: tuple[grpc.StatusCode, str] | None = None
            try:
                with span_of() as span:
                    reset = None
                    try:
                        info = admit(context, metadata, span)
                        request = request_of(request)
                        if info is not None:
                            reset = _tenant.set(info)
                        response = inner(request, context)
                        counters[_OK].inc()
                        return response
                    except Exception as exc:  # noqa: BLE001 - never leak internals
                        failure = failure_of(exc, context)
                        if failure is None:
                            raise
                    finally:
                        if reset is not None:
                            _tenant.reset(reset)
                    span.set_attribute("rpc.grpc.status_code", failure[0].value[0])
                    counters[failure[0]].inc()
            finally:
                if token is not None:
                    otel_context.detach(token)
                seconds.observe(time.perf_counter() - started)
            context.abort(*failure)

        def stream(request, context):
            """Server- and bidi-streaming calls: every step of the response stream runs in
            a context of its own (tenant, trace), whichever thread takes it."""
            return _InContext(contextvars.copy_context(), streamed(request, context))

        def streamed(request, context):
            started = time.perf_counter()
            metadata = dict(context.invocation_metadata())
            token = attach(metadata)
            failure: tuple[grpc.StatusCode, str] | None = None
            try:
                with span_of() as span:
                    try:
                        info = admit(context, metadata, span)
                        request = request_of(request)
                        if info is not None:
                            _tenant.set(info)  # this call's own context: nothing to reset
                        yield from inner(request, context)
                        counters[_OK].inc()
                        return
                    except GeneratorExit:  # the stream was abandoned (cancelled)
                        counters[grpc.StatusCode.CANCELLED].inc()
                        raise
                    except Exception as exc:  # noqa: BLE001 - never leak internals
                        failure = failure_of(exc, context)
                        if failure is None:
                            raise
                    span.set_attribute("rpc.grpc.status_code", failure[0].value[0])
                    counters[failure[0]].inc()
            finally:
                if token is not None:
                    otel_context.detach(token)
                seconds.observe(time.perf_counter() - started)
            context.abort(*failure)

        deserializer = handler.request_deserializer
        descriptor = _input_descriptor(method)
        if deserializer is not None and descriptor is not None:
            deserializer = checked(deserializer, descriptor)
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            inner = handler.unary_unary
            make, behavior = grpc.unary_unary_rpc_method_handler, single
        elif handler.stream_unary is not None:
            inner = handler.stream_unary
            make, behavior = grpc.stream_unary_rpc_method_handler, single
        elif handler.unary_stream is not None:
            inner = handler.unary_stream
            make, behavior = grpc.unary_stream_rpc_method_handler, stream
        else:
            inner = handler.stream_stream
            make, behavior = grpc.stream_stream_rpc_method_handler, stream
        return make(behavior, request_deserializer=deserializer, response_serializer=serializer)


def _input_descriptor(method: str):
    try:
        return (
            descriptor_pool.Default()
            .FindMethodByName(method.strip("/").replace("/", "."))
            .input_type
        )
    except KeyError:
        return None


def _checked_stream(requests: Iterator) -> Iterator:
    for request in requests:
        if type(request) is BadRequest:
            raise _Refusal(grpc.StatusCode.INVALID_ARGUMENT, request.detail)
        yield request


class _InContext:
    """An iterator whose every step (and its end) runs in `ctx`."""

    __slots__ = ("_ctx", "_steps")

    def __init__(self, ctx: contextvars.Context, steps):
        self._ctx, self._steps = ctx, steps

    def __iter__(self):
        return self

    def __next__(self):
        return self._ctx.run(next, self._steps)

    def __del__(self):  # an abandoned stream ends (finally clauses run) in its own context
        self._ctx.run(self._steps.close)


class _Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str):
        self.code, self.detail = code, detail


class DiagnosticsServicer(core_pb2_grpc.DiagnosticsServiceServicer):
    """Tenant-scoped no-ops: measure the server stack itself and exercise every call kind."""

    def __init__(self, service: str):
        self._service = service

    def _reply(self, payload: bytes) -> core_pb2.PingResponse:
        return core_pb2.PingResponse(
            payload=payload, tenant=current_tenant().slug, service=self._service
        )

    def Ping(self, request, context):
        return self._reply(request.payload)

    def PingMany(self, request, context):
        for _ in range(max(0, min(request.count, 1000))):
            yield self._reply(request.payload)

    def PingAll(self, request_iterator, context):
        return self._reply(b"".join(r.payload for r in request_iterator))

    def PingEach(self, request_iterator, context):
        for request in request_iterator:
            yield self._reply(request.payload)


DIAGNOSTICS_CALLERS: trust.Callers = {
    m: trust.ANYONE for m in ("Ping", "PingMany", "PingAll", "PingEach")
}


def build_server(
    service: str,
    registrations: Iterable[Registration],
    directory: TenantDirectory,
    settings: Settings,
    *,
    address: str,
    workers: int,
) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server and the port it bound, over mutual TLS with
    `service`'s certificate (settings.tls_paths). Raises ValueError when a registration
    does not name the callers of each of its methods, ConfigError for unusable TLS files."""
    regs = [
        *registrations,
        Registration(
            core_pb2_grpc.add_DiagnosticsServiceServicer_to_server,
            DiagnosticsServicer(service),
            "ontrackio.core.v1.DiagnosticsService",
            callers=DIAGNOSTICS_CALLERS,
        ),
    ]
    builtin = [health.SERVICE_NAME] + ([reflection.SERVICE_NAME] if settings.development else [])
    callers = _method_callers(regs, builtin)
    scoped = {r.name for r in regs if r.tenant_scoped}
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{service}-grpc"),
        interceptors=[
            PlatformInterceptor(service, directory, scoped, callers, settings.deployment)
        ],
        options=[("grpc.so_reuseport", 0)],
    )
    for reg in regs:
        reg.add(reg.servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.development:
        reflection.enable_server_reflection([r.name for r in regs] + builtin, server)
    for name in [r.name for r in regs] + [""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    credentials = tls.server_credentials(tls.load(settings, service))
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot bind gRPC address {address}")
    return server, port


def _method_callers(regs: list[Registration], builtin: list[str]) -> dict[str, frozenset[str]]:
    """Full method name -> allowed identities; every method of every registration named."""
    pool = descriptor_pool.Default()
    out: dict[str, frozenset[str]] = {}
    for name in builtin:  # health (and reflection): any identity of the deployment
        for m in pool.FindServiceByName(name).methods:
            out[f"/{name}/{m.name}"] = trust.ANYONE
    for reg in regs:
        methods = {m.name for m in pool.FindServiceByName(reg.name).methods}
        missing, unknown = methods - set(reg.callers), set(reg.callers) - methods
        if missing or unknown:
            raise ValueError(
                f"{reg.name}: callers must name exactly its methods "
                f"(missing {sorted(missing)}, unknown {sorted(unknown)})"
            )
        for m, who in reg.callers.items():
            if not who <= trust.IDENTITIES:
                raise ValueError(
                    f"{reg.name}/{m}: unknown identities {sorted(who - trust.IDENTITIES)}"
                )
            out[f"/{reg.name}/{m}"] = frozenset(who)
    return out


def run_forever(server: grpc.Server, on_stop: Callable[[], None] = lambda: None) -> None:
    """Start, then block until SIGTERM/SIGINT; stop gracefully (in-flight calls finish)."""
    stopped = threading.Event()

    def stop(*_):
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    stopped.wait()
    server.stop(grace=5).wait()
    on_stop()
