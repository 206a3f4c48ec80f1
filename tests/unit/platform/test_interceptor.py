"""The gRPC interceptor without a broker or database: the tenant is resolved from metadata,
and with no exporter configured (no span recorded) a caller's trace context still becomes
current in the servicer, so the events it emits continue the caller's trace."""

from __future__ import annotations

import grpc
import pytest

from ontrackio.core import grpcserver, telemetry
from ontrackio.core.directory import TenantDirectory, TenantInfo

SCOPED = "ontrackio.core.v1.DiagnosticsService"
METHOD = f"/{SCOPED}/Ping"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Details:
    method = METHOD


class Aborted(Exception):
    pass


class Context:
    def __init__(self, metadata):
        self._metadata = metadata
        self.aborted = None

    def invocation_metadata(self):
        return self._metadata

    def code(self):
        return None

    def abort(self, code, detail):
        self.aborted = (code, detail)
        raise Aborted


def call(metadata):
    """Run one call through the interceptor; what the servicer saw, and the context."""
    seen = {}

    def servicer(request, context):
        seen["tenant"] = grpcserver.current_tenant().slug
        seen["carrier"] = telemetry.inject()
        return "ok"

    directory = TenantDirectory(lambda s: TenantInfo(s, "active", "main", "business"), 5)
    interceptor = grpcserver.PlatformInterceptor("test", directory, {SCOPED})
    handler = interceptor.intercept_service(
        lambda d: grpc.unary_unary_rpc_method_handler(servicer), Details()
    )
    context = Context(metadata)
    try:
        result = handler.unary_unary(None, context)
    except Aborted:
        result = None
    return result, seen, context


def test_without_recording_the_callers_trace_context_still_flows():
    assert not telemetry.recording()  # the test process exports nothing (conftest)
    result, seen, _ = call((("x-ontrack-tenant", "acme"), ("traceparent", TRACEPARENT)))
    assert result == "ok" and seen["tenant"] == "acme"
    assert seen["carrier"]["traceparent"] == TRACEPARENT
    _, seen, _ = call((("x-ontrack-tenant", "acme"),))
    assert "traceparent" not in seen["carrier"]  # no caller context: none invented


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("x-ontrack-tenant", "Not A Slug"),), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_a_call_without_a_valid_tenant_is_refused(metadata, code):
    result, seen, context = call(metadata)
    assert result is None and seen == {} and context.aborted[0] == code
