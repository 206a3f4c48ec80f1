"""EncryptionService, served by every api: a tenant's encrypted columns counted per data
key version (how far a re-encryption after a rotation has come)."""

from __future__ import annotations

from ontrackio.core import trust
from ontrackio.core.grpcserver import Registration, current_tenant
from ontrackio.core.keys import reencrypt
from ontrackio.core.v1 import core_pb2, core_pb2_grpc

CALLERS: trust.Callers = {"GetEncryptionStatus": trust.CREDENTIALS | trust.OPERATORS}


class EncryptionServicer(core_pb2_grpc.EncryptionServiceServicer):
    def __init__(self, rt):
        self.rt = rt
        self.columns = rt.deployment.contract(rt.service).encrypted

    def GetEncryptionStatus(self, request, context):
        info = current_tenant()
        counted = reencrypt.status(self.rt, info, self.columns)
        current = self.rt.fields.current_version(info) if self.columns else 0
        return core_pb2.EncryptionStatus(
            service=self.rt.service,
            current_version=current,
            columns=[
                core_pb2.EncryptedColumnStatus(
                    table=c.table, column=c.column, rows_by_version=by_version
                )
                for c, by_version in counted
            ],
            reencrypting=any(v != current for _, by in counted for v in by),
        )


def registration(rt) -> Registration:
    return Registration(
        core_pb2_grpc.add_EncryptionServiceServicer_to_server,
        EncryptionServicer(rt),
        "ontrackio.core.v1.EncryptionService",
        callers=CALLERS,
    )
