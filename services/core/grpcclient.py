"""gRPC clients over mutual TLS: every call gets a deadline, the caller's trace context and,
for tenant-scoped services, the tenant in metadata.

A channel presents the certificate of the calling process's identity (core/trust.py) and
accepts only a server holding the certificate of the service it means (core/tls.py).
"""

from __future__ import annotations

import grpc

from ontrackio.core import telemetry, tls
from ontrackio.core.config import Settings
from ontrackio.core.grpcserver import TENANT_METADATA


class _Defaults(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, deadline: float):
        self._deadline = deadline

    def _details(self, details):
        metadata = list(details.metadata or ())
        metadata += list(telemetry.inject().items())
        return _Details(
            details.method,
            details.timeout or self._deadline,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = (
            credentials,
            wait_for_ready,
            compression,
        )


def secure_channel(target: str, service: str, material: tls.Material, options=()) -> grpc.Channel:
    """A bare mutual-TLS channel to `service` at `target`, presenting `material`'s cert."""
    return grpc.secure_channel(
        target,
        tls.channel_credentials(material),
        options=[*tls.server_name_options(service), *options],
    )


def channel(
    settings: Settings, service: str, identity: str, deadline: float | None = None
) -> grpc.Channel:
    """A channel to `service` as `identity` whose calls default to `deadline` seconds
    (settings.grpc_deadline_seconds); raises ConfigError for unusable TLS files."""
    material = tls.load(settings, identity)
    return grpc.intercept_channel(
        secure_channel(settings.grpc_target(service), service, material),
        _Defaults(deadline or settings.grpc_deadline_seconds),
    )


def tenant(slug: str) -> tuple[tuple[str, str], ...]:
    """Metadata naming the tenant of a tenant-scoped call."""
    return ((TENANT_METADATA, slug),)
