"""Identity's KeyService: the key store as the services and the admin API reach it
(decode, call identity/keystore.py, encode)."""

from __future__ import annotations

from ontrackio.core.grpcserver import actor_of, current_caller, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.identity.keystore import KeyStore
from ontrackio.identity.roles import rules as role_rules
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.v1 import keys_pb2 as pb
from ontrackio.identity.v1 import keys_pb2_grpc as pb_grpc


def tenant_key_pb(status: dict) -> pb.TenantKey:
    return pb.TenantKey(
        provider=status["provider"],
        kek=status["kek"],
        customer_managed=status["customer_managed"],
        state=status["state"],
        rewrapped=status["rewrapped"],
        total=status["total"],
        services=[
            pb.ServiceDataKeys(service=s, current_version=max(v), versions=v)
            for s, v in status["services"]
        ],
        changed_at=ts(status["changed_at"]),
        tenant_id=status["tenant_id"],
    )


class KeyServicer(pb_grpc.KeyServiceServicer):
    def __init__(self, keystore: KeyStore, dbs):
        self.keystore = keystore
        self.dbs = dbs  # the tenant's roles, for signed-in actors

    def GetDataKeys(self, request, context):
        ring = self.keystore.ring(current_tenant().slug, current_caller())
        return pb.DataKeys(
            tenant_id=ring.tenant_id,
            current_version=ring.current,
            keys=[
                pb.WrappedDataKey(version=k.version, kek=k.kek, wrapped=k.wrapped)
                for k in ring.keys
            ],
        )

    def GetTenantKey(self, request, context):
        return tenant_key_pb(self.keystore.status(current_tenant().slug))

    def _require_admin(self, context) -> None:
        role_store.require_for_tenant(
            self.dbs, current_tenant(), actor_of(context), role_rules.ADMINISTER
        )

    def SetTenantKey(self, request, context):
        self._require_admin(context)
        return tenant_key_pb(
            self.keystore.set_key(current_tenant().slug, request.key_arn, actor_of(context))
        )

    def RotateDataKeys(self, request, context):
        self._require_admin(context)
        return tenant_key_pb(self.keystore.rotate(current_tenant().slug, actor_of(context)))

    def RewrapDataKeys(self, request, context):
        self._require_admin(context)
        return tenant_key_pb(self.keystore.request_rewrap(current_tenant().slug, actor_of(context)))
