"""The gRPC interceptor without a broker or database: the tenant is resolved from metadata,
and with no exporter configured (no span recorded) a caller's trace context still becomes
current in the servicer, so the events it emits continue the caller's trace. (Certificates,
caller rules and hostile bytes against real servers: tests/integration/test_grpc_trust.py.)"""

from __future__ import annotations

import grpc
import pytest

from ontrackio.core import grpcserver, telemetry, trust
from ontrackio.core.directory import TenantDirectory, TenantInfo

SCOPED = "ontrackio.core.v1.DiagnosticsService"
METHOD = f"/{SCOPED}/Ping"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Details:
    method = METHOD


class Aborted(Exception):
    pass


class Context:
    def __init__(self, metadata, caller="operator"):
        self._metadata = metadata
        self._caller = caller
        self.aborted = None

    def invocation_metadata(self):
        return self._metadata

    def peer_identities(self):
        return [trust.spiffe_id("test", self._caller).encode(), self._caller.encode()]

    def code(self):
        return None

    def abort(self, code, detail):
        self.aborted = (code, detail)
        raise Aborted


def call(metadata, caller="operator", callers=trust.ANYONE):
    """Run one call through the interceptor; what the servicer saw, and the context."""
    seen = {}

    def servicer(request, context):
        seen["tenant"] = grpcserver.current_tenant().slug
        seen["carrier"] = telemetry.inject()
        return "ok"

    directory = TenantDirectory(lambda s: TenantInfo(s, "active", "main", "business"), 5)
    interceptor = grpcserver.PlatformInterceptor(
        "test", directory, {SCOPED}, {METHOD: callers}, "test"
    )
    handler = interceptor.intercept_service(
        lambda d: grpc.unary_unary_rpc_method_handler(servicer), Details()
    )
    context = Context(metadata, caller)
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


def test_a_caller_the_method_does_not_allow_is_refused_before_the_tenant_is_looked_at():
    result, seen, context = call((), caller="privacy", callers=trust.OPERATORS)
    assert result is None and seen == {}
    assert context.aborted == (grpc.StatusCode.PERMISSION_DENIED, "privacy may not call Ping")


def test_an_actor_is_refused_from_a_caller_that_may_not_name_one():
    md = (("x-ontrack-tenant", "acme"), (trust.ACTOR_METADATA, "cli:mallory"))
    _, seen, context = call(md, caller="operator")
    assert seen == {} and context.aborted[0] == grpc.StatusCode.PERMISSION_DENIED
    result, seen, _ = call(md, caller="cli")
    assert result == "ok" and seen["tenant"] == "acme"
