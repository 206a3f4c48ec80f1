"""gRPC clients: every call gets a deadline, the caller's trace context and, for
tenant-scoped services, the tenant in metadata."""

from __future__ import annotations

import grpc

from ontrackio.core import telemetry
from ontrackio.core.grpcserver import TENANT_METADATA


class _Defaults(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, deadline: float):
        self._deadline = deadline

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or ())
        metadata += list(telemetry.inject().items())
        details = _Details(
            details.method,
            details.timeout or self._deadline,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )
        return continuation(details, request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = (
            credentials,
            wait_for_ready,
            compression,
        )


def channel(target: str, deadline: float) -> grpc.Channel:
    """An insecure channel (in-cluster traffic) whose calls default to `deadline` seconds."""
    return grpc.intercept_channel(grpc.insecure_channel(target), _Defaults(deadline))


def tenant(slug: str) -> tuple[tuple[str, str], ...]:
    """Metadata naming the tenant of a tenant-scoped call."""
    return ((TENANT_METADATA, slug),)
