"""Identity's tenant registry as the other services' processes reach it: TenantService over
mutual TLS, answers decoded into core's TenantInfo (the deployment hands this to core,
which names no service: catalogue.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

import grpc

from ontrackio.core import grpcclient
from ontrackio.core.config import Settings
from ontrackio.core.directory import TenantInfo
from ontrackio.core.errors import KeyUnavailable, Unavailable
from ontrackio.core.grpcserver import REASON_METADATA, TENANT_METADATA
from ontrackio.core.keys.ring import KeyRing, KeySource, WrappedKey
from ontrackio.identity.v1 import identity_pb2, identity_pb2_grpc, keys_pb2, keys_pb2_grpc


def _names(enum, prefix: str) -> dict[int, str]:
    """The enum's values (but UNSPECIFIED) by number, spelled as in core/vocabulary.py."""
    return {v: n.removeprefix(prefix).lower() for n, v in enum.items() if v}


STATUSES = _names(identity_pb2.TenantStatus, "TENANT_STATUS_")
TIERS = _names(identity_pb2.Tier, "TIER_")


def tenant_lookup(settings: Settings, service: str) -> Callable[[str], TenantInfo | None]:
    """A lookup over gRPC, made as `service` (its certificate).

    In an eventlet worker the call is made directly from the green thread: it
    blocks the hub for the call (about half a millisecond; the directory caches answers).
    It must not go through `eventlet.tpool`: grpcio's channel locks are green locks in a
    patched process, and two OS threads contending for one never wake (a deadlock seen
    under load; tests/integration/test_worker_grpc_client.py guards against it).
    """
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
            STATUSES.get(t.status, "unknown"),
            t.placement,
            TIERS.get(t.tier, ""),
            t.delete_after.ToDatetime(tzinfo=UTC) if t.HasField("delete_after") else None,
        )

    return call


def _cause(exc: grpc.RpcError) -> str:
    """KeyUnavailable's cause from its message, "tenant key unavailable (<cause>)"."""
    detail = exc.details() or ""
    inner = detail[detail.find("(") + 1 : detail.rfind(")")] if "(" in detail else ""
    return inner.replace(" ", "_")


def key_source(settings: Settings, service: str) -> KeySource:
    """`service`'s wrapped data keys of a tenant, from identity's KeyService (as its
    certificate). Identity's refusal "tenant key unavailable" stays KeyUnavailable; any
    other failure is Unavailable (retry later). Made from green threads as tenant_lookup."""
    stub = keys_pb2_grpc.KeyServiceStub(grpcclient.channel(settings, "identity", service))

    def call(info) -> KeyRing:
        try:
            r = stub.GetDataKeys(
                keys_pb2.GetDataKeysRequest(), metadata=((TENANT_METADATA, info.slug),)
            )
        except grpc.RpcError as exc:
            reasons = dict(exc.trailing_metadata() or ())
            if reasons.get(REASON_METADATA) == KeyUnavailable.reason:
                raise KeyUnavailable(_cause(exc)) from None
            raise Unavailable("key store unavailable; retry later") from None
        return KeyRing(
            r.tenant_id,
            r.current_version,
            tuple(WrappedKey(k.version, k.kek, k.wrapped) for k in r.keys),
        )

    return call
