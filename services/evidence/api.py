"""Evidence's api process: gRPC entrypoints for evidence metrics."""

from __future__ import annotations

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry, trust
from ontrackio.core.grpcserver import Registration, current_tenant
from ontrackio.core.runtime import Runtime
from ontrackio.evidence import metrics
from ontrackio.evidence.v1 import evidence_pb2 as pb
from ontrackio.evidence.v1 import evidence_pb2_grpc as pb_grpc


class MetricsServicer(pb_grpc.MetricsServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs

    def GetInventoryMetrics(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            total, owned, coverage = metrics.inventory_metrics(u)
        return pb.InventoryMetrics(
            total_assets=total, assets_with_owner=owned, owner_coverage=coverage
        )


# Who may call each method (core/trust.py; the interceptor refuses everyone else).
CALLERS: dict[str, trust.Callers] = {
    "ontrackio.evidence.v1.MetricsService": trust.every("GetInventoryMetrics", trust.TENANT_DATA)
}


def registrations(rt: Runtime) -> list[Registration]:
    return [
        Registration(
            pb_grpc.add_MetricsServiceServicer_to_server,
            MetricsServicer(rt),
            "ontrackio.evidence.v1.MetricsService",
            callers=CALLERS["ontrackio.evidence.v1.MetricsService"],
        )
    ]


def main() -> None:
    entry.api_main("evidence", registrations, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
