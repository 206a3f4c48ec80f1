"""The tenant directory source of every service but identity: identity's TenantService."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

import grpc

from ontrackio.core import grpcclient
from ontrackio.core.config import Settings
from ontrackio.core.directory import TenantInfo
from ontrackio.core.errors import Unavailable

_STATUS = {1: "provisioning", 2: "active", 3: "suspended", 4: "deleting", 5: "deleted"}
_TIER = {1: "business", 2: "enterprise"}


def lookup(settings: Settings, service: str) -> Callable[[str], TenantInfo | None]:
    """A lookup over gRPC, made as `service` (its certificate).

    In an eventlet worker the call is made directly from the green thread: it
    blocks the hub for the call (about half a millisecond; the directory caches answers).
    It must not go through `eventlet.tpool`: grpcio's channel locks are green locks in a
    patched process, and two OS threads contending for one never wake (a deadlock seen
    under load; tests/integration/test_worker_grpc_client.py guards against it).
    """
    from ontrackio.identity.v1 import identity_pb2, identity_pb2_grpc

    stub = identity_pb2_grpc.TenantServiceStub(grpcclient.channel(settings, "identity", service))

    def call(slug: str) -> TenantInfo | None:
        try:
            t = stub.GetTenant(identity_pb2.GetTenantRequest(slug=slug))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise Unavailable("tenant directory unavailable; retry later") from None
        return TenantInfo(
            t.slug,
            _STATUS.get(t.status, "unknown"),
            t.placement,
            _TIER.get(t.tier, ""),
            t.delete_after.ToDatetime(tzinfo=UTC) if t.HasField("delete_after") else None,
        )

    return call
