"""grpc.aio clients of the services behind the gateway: a deadline and metadata on every call.

Channels are opened per worker process, inside its event loop (``start``), and closed at
shutdown. Every call is counted by service and method (``/metrics``; the benchmark uses the
identity counts to show that floods of bad tokens never reach identity).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Counter

from ontrackio.core import telemetry, tls
from ontrackio.core.grpcserver import TENANT_METADATA
from ontrackio.core.trust import ACTOR_METADATA, CLIENT_ADDRESS_METADATA, REQUEST_ID_METADATA
from ontrackio.gateway.hosts import TenantNotServed
from ontrackio.identity.v1 import (
    access_pb2_grpc,
    audit_pb2_grpc,
    domains_pb2_grpc,
    identity_pb2_grpc,
    keys_pb2_grpc,
    mfa_pb2_grpc,
    oidc_pb2_grpc,
    saml_pb2_grpc,
    sessions_pb2_grpc,
    signin_pb2_grpc,
)
from ontrackio.inventory.v1 import inventory_pb2_grpc

UPSTREAM_CALLS = Counter(
    "ontrack_gateway_upstream_calls",
    "gRPC calls made by the gateway.",
    ["service", "method", "code"],
)
_GATE_STATUS = re.compile(r"[a-z]+")
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


class Upstream:
    """Stubs of identity and inventory; ``call`` adds deadline, tenant, actor and trace.

    Channels are mutual TLS: the gateway presents its own certificate (`material`) and
    accepts only the service it means at each target (core/tls.py)."""

    def __init__(self, targets: dict[str, str], deadline: float, material: tls.Material) -> None:
        self.targets = targets
        self.material = material
        self.deadline = deadline
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.tenants: Any = None
        self.users: Any = None
        self.access: Any = None
        self.audit: Any = None
        self.keys: Any = None
        self.signin: Any = None
        self.saml: Any = None
        self.oidc: Any = None
        self.mfa: Any = None
        self.domains: Any = None
        self.collaborators: Any = None
        self.assets: Any = None
        self.identity_health: Any = None

    def start(self) -> None:
        """Open the channels; call from inside the worker's running event loop."""
        credentials = tls.channel_credentials(self.material)
        for name, target in self.targets.items():
            self.channels[name] = grpc.aio.secure_channel(
                target, credentials, options=[*_CHANNEL_OPTIONS, *tls.server_name_options(name)]
            )
        identity, inventory = self.channels["identity"], self.channels["inventory"]
        self.tenants = identity_pb2_grpc.TenantServiceStub(identity)
        self.users = identity_pb2_grpc.UserServiceStub(identity)
        self.access = access_pb2_grpc.AccessServiceStub(identity)
        self.audit = audit_pb2_grpc.AuditServiceStub(identity)
        self.keys = keys_pb2_grpc.KeyServiceStub(identity)
        self.sessions = sessions_pb2_grpc.SessionServiceStub(identity)
        self.signin = signin_pb2_grpc.SignInServiceStub(identity)
        self.saml = saml_pb2_grpc.SamlServiceStub(identity)
        self.oidc = oidc_pb2_grpc.OidcServiceStub(identity)
        self.mfa = mfa_pb2_grpc.MfaServiceStub(identity)
        self.domains = domains_pb2_grpc.DomainServiceStub(identity)
        self.collaborators = domains_pb2_grpc.CollaboratorServiceStub(identity)
        self.identity_health = health_pb2_grpc.HealthStub(identity)
        self.assets = inventory_pb2_grpc.AssetServiceStub(inventory)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close(grace=1.0)
        self.channels.clear()

    async def call(
        self,
        method: Any,
        request: Any,
        *,
        tenant: str | None = None,
        actor: str | None = None,
        client_address: str | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Await ``method(request)``; raises grpc.aio.AioRpcError (mapped by problems.py).

        When the services refuse ``tenant`` itself (it was suspended or deleted after the edge
        looked it up), raises hosts.TenantNotServed instead: the answer is the unknown-host 404,
        not a 409 "tenant … is suspended" that tells a prober the tenant exists.
        """
        metadata: list[tuple[str, str]] = list(telemetry.inject().items())
        if tenant is not None:
            metadata.append((TENANT_METADATA, tenant))
        if actor is not None:
            metadata.append((ACTOR_METADATA, actor))
        if client_address:  # where the request came from, for the audit trail
            metadata.append((CLIENT_ADDRESS_METADATA, client_address))
        if request_id:
            metadata.append((REQUEST_ID_METADATA, request_id))
        name = _method_name(method)
        try:
            result = await method(request, timeout=timeout or self.deadline, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            UPSTREAM_CALLS.labels(*name, exc.code().name).inc()
            if tenant is not None and tenant_refused(exc.code(), exc.details(), tenant):
                raise TenantNotServed() from None
            raise
        UPSTREAM_CALLS.labels(*name, "OK").inc()
        return result

    async def identity_ready(self, timeout: float = 1.0) -> bool:
        try:
            reply = await self.identity_health.Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def tenant_refused(code: grpc.StatusCode, details: str | None, tenant: str) -> bool:
    """True when a service's tenant gate refused ``tenant`` (core.directory.require_active).

    The gate answers NOT_FOUND ``tenant 'x' not found`` or FAILED_PRECONDITION
    ``tenant 'x' is <status>``; only those texts naming this very tenant count.
    """
    if code is grpc.StatusCode.NOT_FOUND:
        return details == f"tenant {tenant!r} not found"
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        prefix = f"tenant {tenant!r} is "
        text = details or ""
        return text.startswith(prefix) and bool(_GATE_STATUS.fullmatch(text[len(prefix) :]))
    return False


def _method_name(method: Any) -> Sequence[str]:
    # grpc.aio multicallables keep the full method name as bytes: b"/pkg.Service/Method".
    raw = getattr(method, "_method", b"") or b""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    service, _, rpc = text.strip("/").rpartition("/")
    short = service.rsplit(".", 1)[-1].removesuffix("Service").lower()
    return (short or "unknown", rpc or "unknown")
