"""Privacy's api process: gRPC entrypoints over the data-subject register."""

from __future__ import annotations

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry, trust
from ontrackio.core.grpcserver import Registration, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime
from ontrackio.privacy import subjects
from ontrackio.privacy.v1 import privacy_pb2 as pb
from ontrackio.privacy.v1 import privacy_pb2_grpc as pb_grpc


class DataSubjectServicer(pb_grpc.DataSubjectServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs

    def GetDataSubject(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            row = subjects.get(u, request.user_id)
        return pb.DataSubject(
            user_id=str(row["user_id"]), email=row["email"], first_seen_at=ts(row["first_seen_at"])
        )

    def CountDataSubjects(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            return pb.CountDataSubjectsResponse(count=subjects.count(u))


# Who may call each method (core/trust.py; the interceptor refuses everyone else).
CALLERS: dict[str, trust.Callers] = {
    "ontrackio.privacy.v1.DataSubjectService": trust.every(
        "GetDataSubject CountDataSubjects", trust.TENANT_DATA
    )
}


def registrations(rt: Runtime) -> list[Registration]:
    return [
        Registration(
            pb_grpc.add_DataSubjectServiceServicer_to_server,
            DataSubjectServicer(rt),
            "ontrackio.privacy.v1.DataSubjectService",
            callers=CALLERS["ontrackio.privacy.v1.DataSubjectService"],
        )
    ]


def main() -> None:
    entry.api_main("privacy", registrations, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
