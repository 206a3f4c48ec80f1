"""OpenTelemetry set-up and W3C trace-context propagation (gRPC metadata, events).

One trace follows a request from the gateway through gRPC, into the outbox row it wrote,
over RabbitMQ and into the consumer that applied the event. The process's tracer provider
is OpenTelemetry's own (one per process); this module keeps no state of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

TRACEPARENT = "traceparent"


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per finished span to a file (tests and local debugging)."""

    def __init__(self, path: str):
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            lines.append(
                json.dumps(
                    {
                        "name": s.name,
                        "service": s.resource.attributes.get("service.name"),
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                        "attributes": {k: str(v) for k, v in (s.attributes or {}).items()},
                    }
                )
            )
        with self._lock, open(self._path, "a") as fh:
            fh.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS


def setup(service_name: str, exporter: str) -> None:
    """Install the process's tracer provider; `exporter` is none|console|file:PATH.

    With "none" no SDK provider is installed: nothing is recorded, no new trace ids are
    made, but incoming trace context is still propagated. Once a provider is installed,
    later calls change nothing (OpenTelemetry allows one per process)."""
    if recording():
        return
    if exporter == "none":
        # No spans are recorded: the API's no-op tracer costs next to nothing per call, and
        # a caller's trace context still flows into the events a request emits.
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter.startswith("file:"):
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(exporter[5:])))
    trace.set_tracer_provider(provider)


def recording() -> bool:
    """Whether spans are recorded in this process: an SDK provider (an exporter) is set."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def tracer(name: str = "ontrackio") -> trace.Tracer:
    return trace.get_tracer(name)


def inject() -> dict[str, str]:
    """The current trace context as a carrier dict (traceparent, tracestate)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context:
    return propagate.extract(dict(carrier or {}))
