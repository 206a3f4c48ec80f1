"""Where an audited act came from: request id, client address and trace id of the call.

Entrypoints bind the origin of the call they serve (``bound``); the code that appends an
entry reads it (``current``), so domain functions need no extra parameters. The request id
and the client's address come from the edge as gRPC metadata (``REQUEST_ID_KEY``,
``CLIENT_ADDRESS_KEY``); the trace id from the caller's W3C ``traceparent``, else from the
current OpenTelemetry span.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace

from ontrackio.core import trust
from ontrackio.core.audit.log import LIMITS, Origin, clean

REQUEST_ID_KEY = trust.REQUEST_ID_METADATA
CLIENT_ADDRESS_KEY = trust.CLIENT_ADDRESS_METADATA
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}\Z")

_current: contextvars.ContextVar[Origin | None] = contextvars.ContextVar(
    "audit_origin", default=None
)


def _trace_id(metadata: Mapping[str, str]) -> str:
    m = _TRACEPARENT.match(str(metadata.get("traceparent", "")))
    if m and m.group(1) != "0" * 32:
        return m.group(1)
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def from_metadata(metadata: Mapping[str, str], client_address: str = "") -> Origin:
    """The origin a call's metadata names; `client_address` (e.g. from the request body)
    is used when the metadata names none."""
    return Origin(
        request_id=clean(metadata.get(REQUEST_ID_KEY, ""), LIMITS["request_id"]),
        client_address=clean(
            metadata.get(CLIENT_ADDRESS_KEY, "") or client_address, LIMITS["client_address"]
        ),
        trace_id=_trace_id(metadata),
    )


def current() -> Origin:
    """The bound origin, or one with only the current trace id."""
    bound_origin = _current.get()
    return bound_origin if bound_origin is not None else Origin(trace_id=_trace_id({}))


@contextmanager
def bound(origin: Origin) -> Iterator[Origin]:
    token = _current.set(origin)
    try:
        yield origin
    finally:
        _current.reset(token)
