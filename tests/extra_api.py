"""An extra api process beside the session's stack, with settings of its own.

Some documented behaviours depend on a setting the shared stack runs with differently (the
suite's deletion grace is 0, its pools are sized for throughput) or on a fault that must not
reach the shared processes (a broker that goes away). A test then starts one more api of a
service on ports of its own, against the same databases and broker, with ``env`` overrides,
and talks to it directly; the shared processes never see the overrides.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from ontrackio.core import grpcclient
from ontrackio.devtools.stack import ROOT, free_port, health_ok
from tests.helpers import eventually


@dataclass
class ExtraApi:
    service: str
    port: int
    metrics_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def extra_api(system, service: str, name: str, **env: str) -> Iterator[ExtraApi]:
    """`service`'s api as a process of its own (log ``<run dir>/<name>.log``), serving when
    the block starts and stopped (SIGTERM, then SIGKILL) when it ends."""
    api = ExtraApi(service, free_port(), free_port())
    base = system.env()
    ports = json.loads(base.get("ONTRACK_METRICS_PORTS", "{}"))
    ports[f"{service}-api"] = api.metrics_port
    full = {
        **base,
        f"ONTRACK_{service.upper()}_GRPC_PORT": str(api.port),
        "ONTRACK_METRICS_PORTS": json.dumps(ports),
        "ONTRACK_OTEL_EXPORTER": "none",
        **env,
    }
    log = open(system.run_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", f"ontrackio.{service}.api"],
        env=full,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        material = system.material("operator")
        # Done waiting once it serves or has exited (a crash is reported at once).
        eventually(lambda: proc.poll() is not None or health_ok(api.target, service, material), 60)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {name}.log")
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def channel(system, api: ExtraApi, identity: str = "operator") -> grpc.Channel:
    """A mutual-TLS channel to the extra api presenting `identity`'s certificate."""
    return grpcclient.secure_channel(api.target, api.service, system.material(identity))
