"""The two servers of the gRPC-hop figure, each run in its own process by bench.grpc_hop.

    python -m bench.grpc_servers ours PORT WORKERS   # core.grpcserver.build_server
    python -m bench.grpc_servers echo PORT WORKERS   # a bare grpcio server, no interceptor

`ours` is the api process's server stack exactly as entry.api_main builds it (tracer
provider installed, PlatformInterceptor, health, reflection, DiagnosticsService) with a
tenant directory whose source answers "active" for every slug, cached as in production.
`echo` serves the same method with the same messages and nothing else.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc


def serve_ours(port: int, workers: int) -> grpc.Server:
    from ontrackio.core import config, grpcserver, telemetry
    from ontrackio.core.directory import TenantDirectory, TenantInfo

    settings = config.load()
    telemetry.setup("bench", settings.otel_exporter)
    directory = TenantDirectory(
        lambda slug: TenantInfo(slug, "active", "main", "business"), settings.tenant_cache_seconds
    )
    server, _ = grpcserver.build_server(
        "bench", [], directory, address=f"127.0.0.1:{port}", workers=workers
    )
    return server


def serve_echo(port: int, workers: int) -> grpc.Server:
    from ontrackio.core.v1 import core_pb2, core_pb2_grpc

    class Echo(core_pb2_grpc.DiagnosticsServiceServicer):
        def Ping(self, request, context):
            return core_pb2.PingResponse(payload=request.payload, service="echo")

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)]
    )
    core_pb2_grpc.add_DiagnosticsServiceServicer_to_server(Echo(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot bind 127.0.0.1:{port}")
    return server


def main() -> None:
    kind, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    server = (serve_ours if kind == "ours" else serve_echo)(port, workers)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    server.start()
    print("ready", flush=True)
    stopped.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
