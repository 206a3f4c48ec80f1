"""The api process: a grpcio server with health checking, reflection and one interceptor.

The interceptor, per call: continues the caller's trace, resolves the tenant of
tenant-scoped methods from the `x-ontrack-tenant` metadata (missing → UNAUTHENTICATED,
malformed → INVALID_ARGUMENT, unknown → NOT_FOUND, not active → FAILED_PRECONDITION), and
maps domain errors to status codes through grpcstatus.status_for. Never run this in an
eventlet-patched process.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import context as otel_context
from opentelemetry import trace

from ontrackio.core import metrics, telemetry
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.errors import DomainError
from ontrackio.core.grpcstatus import status_for
from ontrackio.core.tenancy import SLUG_RE
from ontrackio.core.v1 import core_pb2, core_pb2_grpc

log = logging.getLogger(__name__)

TENANT_METADATA = "x-ontrack-tenant"
_tenant: contextvars.ContextVar[TenantInfo | None] = contextvars.ContextVar("tenant", default=None)
_NO_SPAN = contextlib.nullcontext(trace.INVALID_SPAN)  # reusable; its set_attribute does nothing


def tenant_or_none() -> TenantInfo | None:
    """The tenant of the call being served, if any (for logs)."""
    return _tenant.get()


def current_tenant() -> TenantInfo:
    """The tenant of the tenant-scoped call being served."""
    info = _tenant.get()
    if info is None:  # a programming error: the method was registered as unscoped
        raise RuntimeError("no tenant in this call")
    return info


@dataclass(frozen=True)
class Registration:
    """One gRPC service to serve: its add-function, servicer and full name."""

    add: Callable[[object, grpc.Server], None]
    servicer: object
    name: str
    tenant_scoped: bool = True


class PlatformInterceptor(grpc.ServerInterceptor):
    def __init__(self, service: str, directory: TenantDirectory, scoped: set[str]):
        self._service = service
        self._directory = directory
        self._scoped = scoped
        self._tracer = telemetry.tracer("ontrackio.grpc")
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(self, continuation, details):
        wrapped = self._handlers.get(details.method)
        if wrapped is None:
            handler = continuation(details)
            if handler is None or handler.unary_unary is None:
                return handler
            wrapped = self._handlers[details.method] = self._wrap(details.method, handler)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        scoped = method.split("/")[1] in self._scoped
        inner = handler.unary_unary
        directory, tracer = self._directory, self._tracer
        short = method.rsplit("/", 1)[1]
        seconds = metrics.GRPC_SECONDS.labels(self._service, short)
        counters = {
            code: metrics.GRPC_REQUESTS.labels(self._service, short, code.name)
            for code in grpc.StatusCode
        }

        def behavior(request, context):
            started = time.perf_counter()
            metadata = dict(context.invocation_metadata())
            # The caller's trace context, if it sent one, becomes current (events the call
            # emits carry it); a server span only when spans are recorded. Without an
            # exporter the no-op span changed nothing but cost a third of this function.
            token = (
                otel_context.attach(telemetry.extract(metadata))
                if telemetry.TRACEPARENT in metadata
                else None
            )
            failure: tuple[grpc.StatusCode, str] | None = None
            try:
                with (
                    tracer.start_as_current_span(method, kind=trace.SpanKind.SERVER)
                    if telemetry.recording()
                    else _NO_SPAN
                ) as span:
                    reset = None
                    try:
                        if scoped:
                            slug = metadata.get(TENANT_METADATA)
                            if not slug:
                                raise _Refusal(
                                    grpc.StatusCode.UNAUTHENTICATED,
                                    f"missing tenant: set the {TENANT_METADATA} metadata",
                                )
                            if not SLUG_RE.match(slug):
                                raise _Refusal(
                                    grpc.StatusCode.INVALID_ARGUMENT, "malformed tenant slug"
                                )
                            span.set_attribute("ontrack.tenant", slug)
                            reset = _tenant.set(directory.require_active(slug))
                        response = inner(request, context)
                        counters[grpc.StatusCode.OK].inc()
                        return response
                    except _Refusal as exc:
                        failure = (exc.code, exc.detail)
                    except DomainError as exc:
                        failure = status_for(exc)
                    except Exception as exc:  # noqa: BLE001 - never leak internals
                        if context.code() is not None:  # the servicer aborted itself
                            counters[context.code()].inc()
                            raise
                        log.exception("unhandled error in %s", method)
                        failure = status_for(exc)
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

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str):
        self.code, self.detail = code, detail


class DiagnosticsServicer(core_pb2_grpc.DiagnosticsServiceServicer):
    """Tenant-scoped no-op: measures the server stack itself."""

    def __init__(self, service: str):
        self._service = service

    def Ping(self, request, context):
        return core_pb2.PingResponse(
            payload=request.payload, tenant=current_tenant().slug, service=self._service
        )


def build_server(
    service: str,
    registrations: Iterable[Registration],
    directory: TenantDirectory,
    *,
    address: str,
    workers: int,
) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server and the port it bound."""
    regs = [
        *registrations,
        Registration(
            core_pb2_grpc.add_DiagnosticsServiceServicer_to_server,
            DiagnosticsServicer(service),
            "ontrackio.core.v1.DiagnosticsService",
        ),
    ]
    scoped = {r.name for r in regs if r.tenant_scoped}
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{service}-grpc"),
        interceptors=[PlatformInterceptor(service, directory, scoped)],
        options=[("grpc.so_reuseport", 0)],
    )
    for reg in regs:
        reg.add(reg.servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [r.name for r in regs] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    for name in [r.name for r in regs] + [""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC address {address}")
    return server, port


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
