"""Inventory's api process: gRPC entrypoints for assets."""

from __future__ import annotations

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry, trust
from ontrackio.core.grpcserver import Registration, actor_of, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime
from ontrackio.inventory import assets
from ontrackio.inventory.v1 import inventory_pb2 as pb
from ontrackio.inventory.v1 import inventory_pb2_grpc as pb_grpc


def asset_pb(row) -> pb.Asset:
    return pb.Asset(
        id=str(row["id"]),
        name=row["name"],
        kind=row["kind"],
        owner_user_id=str(row["owner_user_id"] or ""),
        owner_email=row["owner_email"],
        owner_active=row["owner_active"],
        created_at=ts(row["created_at"]),
        has_recovery_key=row["has_recovery_key"],
    )


class AssetServicer(pb_grpc.AssetServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs
        self.fields = rt.fields

    def _seal(self, info):
        return lambda row_id, value: self.fields.encrypt_text(
            info, *assets.RECOVERY_KEY, row_id, value
        )

    def CreateAsset(self, request, context):
        info = current_tenant()
        if request.recovery_key:
            self.fields.ready(info)
        with self.dbs.unit_of_work(info) as u:
            return asset_pb(
                assets.create(
                    u,
                    request.name,
                    request.kind,
                    request.owner_user_id,
                    request.recovery_key,
                    self._seal(info),
                    actor_of(context),
                )
            )

    def GetRecoveryKey(self, request, context):
        info = current_tenant()

        def unseal(row_id, blob):
            return self.fields.decrypt_text(info, *assets.RECOVERY_KEY, row_id, blob)

        self.fields.ready(info)
        with self.dbs.unit_of_work(info) as u:
            value = assets.recovery_key(u, request.id, unseal, actor_of(context))
        return pb.RecoveryKey(asset_id=request.id, recovery_key=value)

    def SetRecoveryKey(self, request, context):
        info = current_tenant()
        self.fields.ready(info)
        with self.dbs.unit_of_work(info) as u:
            return asset_pb(
                assets.set_recovery_key(
                    u, request.id, request.recovery_key, self._seal(info), actor_of(context)
                )
            )

    def GetAsset(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            return asset_pb(assets.get(u, request.id))

    def ListAssets(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            rows, token = assets.list_page(u, request.page_size, request.page_token)
        return pb.ListAssetsResponse(assets=[asset_pb(r) for r in rows], next_page_token=token)


# Who may call each method (core/trust.py; the interceptor refuses everyone else).
CALLERS: dict[str, trust.Callers] = {
    "ontrackio.inventory.v1.AssetService": trust.every(
        "CreateAsset GetAsset ListAssets GetRecoveryKey SetRecoveryKey", trust.TENANT_DATA
    )
}


def registrations(rt: Runtime) -> list[Registration]:
    return [
        Registration(
            pb_grpc.add_AssetServiceServicer_to_server,
            AssetServicer(rt),
            "ontrackio.inventory.v1.AssetService",
            callers=CALLERS["ontrackio.inventory.v1.AssetService"],
        )
    ]


def main() -> None:
    entry.api_main("inventory", registrations, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
