"""JSON log lines carry the trace and tenant of the work they describe."""

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from ontrackio.core.directory import TenantInfo
from ontrackio.core.grpcserver import _tenant
from ontrackio.core.logs import JsonFormatter


def test_json_line_has_trace_and_tenant():
    tracer = TracerProvider().get_tracer("t")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    token = _tenant.set(TenantInfo("acme", "active", "main", "business"))
    try:
        with tracer.start_as_current_span("s") as span:
            doc = json.loads(JsonFormatter("inventory-api").format(record))
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        _tenant.reset(token)
    assert doc["msg"] == "hello you" and doc["level"] == "WARNING"
    assert doc["trace_id"] == trace_id and doc["tenant"] == "acme"
    assert doc["process"] == "inventory-api"


def test_json_line_without_context_has_no_ids():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", (), None)
    doc = json.loads(JsonFormatter("p").format(record))
    assert "trace_id" not in doc and "tenant" not in doc
