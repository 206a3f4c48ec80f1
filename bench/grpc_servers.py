"""The servers of the gRPC-hop figures, each run in its own process by bench.grpc_hop.

    python -m bench.grpc_servers ours PORT WORKERS PKI_DIR     # core.grpcserver.build_server
    python -m bench.grpc_servers echo PORT WORKERS PKI_DIR     # bare grpcio, mutual TLS
    python -m bench.grpc_servers plain PORT WORKERS            # bare grpcio, plaintext

`ours` is the api process's server stack exactly as entry.api_main builds it (tracer
provider installed, PlatformInterceptor with caller rules and request checks, health,
DiagnosticsService, mutual TLS with the identity api's certificate from the environment's
ONTRACK_TLS_* settings) with a tenant directory whose source answers "active" for every
slug, cached as in production. `echo` serves the same method with the same messages and
the same certificates (client certificate required), and nothing else; `plain` is `echo`
without TLS.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

SERVER_IDENTITY = "identity"  # whose certificate the servers present


def serve_ours(port: int, workers: int) -> grpc.Server:
    from ontrackio.core import config, grpcserver, telemetry
    from ontrackio.core.directory import TenantDirectory, TenantInfo

    settings = config.load()
    telemetry.setup("bench", settings.otel_exporter)
    directory = TenantDirectory(
        lambda slug: TenantInfo(slug, "active", "main", "business"), settings.tenant_cache_seconds
    )
    server, _ = grpcserver.build_server(
        SERVER_IDENTITY, [], directory, settings, address=f"127.0.0.1:{port}", workers=workers
    )
    return server


def serve_echo(port: int, workers: int, pki_dir: Path | None) -> grpc.Server:
    from ontrackio.core.v1 import core_pb2, core_pb2_grpc

    class Echo(core_pb2_grpc.DiagnosticsServiceServicer):
        def Ping(self, request, context):
            return core_pb2.PingResponse(payload=request.payload, service="echo")

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)]
    )
    core_pb2_grpc.add_DiagnosticsServiceServicer_to_server(Echo(), server)
    address = f"127.0.0.1:{port}"
    if pki_dir is None:
        bound = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials(
            [
                (
                    (pki_dir / f"{SERVER_IDENTITY}-key.pem").read_bytes(),
                    (pki_dir / f"{SERVER_IDENTITY}.pem").read_bytes(),
                )
            ],
            root_certificates=(pki_dir / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"cannot bind {address}")
    return server


def main() -> None:
    kind, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if kind == "ours":
        server = serve_ours(port, workers)
    else:
        server = serve_echo(port, workers, Path(sys.argv[4]) if kind == "echo" else None)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    server.start()
    print("ready", flush=True)
    stopped.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
