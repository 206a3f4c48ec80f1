"""Run the whole system locally as child processes: every service's api and worker, and
the gateway. Used by `make run`, the integration and e2e tests, and `make bench`.

Each stack has its own development PKI (devtools/pki.py) in ``<run dir>/pki``: every
process finds its certificate there through the ONTRACK_TLS_* settings of `env()`."""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from ontrackio.catalogue import SERVICES
from ontrackio.core import config, grpcclient, tls
from ontrackio.devtools import pki

ROOT = Path(__file__).resolve().parents[2]


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free now and outside the kernel's ephemeral range, so that no outgoing
    connection takes it between this check and the server binding it."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(20000, 32000) if not low <= p <= high]
    for _ in range(200):
        port = random.choice(candidates)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port found")


def processes(gateway: bool = True) -> dict[str, list[str]]:
    """Process name -> command line."""
    procs = {}
    for s in SERVICES:
        procs[f"{s}-api"] = [sys.executable, "-m", f"ontrackio.{s}.api"]
        procs[f"{s}-worker"] = [sys.executable, "-m", f"ontrackio.{s}.worker"]
    if gateway:
        procs["gateway"] = [sys.executable, "-m", "ontrackio.gateway.main"]
    return procs


def health_ok(target: str, service: str, material: tls.Material) -> bool:
    """The gRPC server of `service` at `target` reports SERVING (asked with `material`)."""
    try:
        with grpcclient.secure_channel(target, service, material) as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        return r.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def http_ok(port: int, path: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
            )
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _signal_group(pgid: int, sig: int) -> None:
    """Signal every process of the group `pgid` (none left is not an error). The group's
    id is its leader's pid, which is never handed to another process while any member
    of the group lives."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Some process of the group `pgid` still runs. A zombie does not count: it has
    stopped, and where nobody reaps orphans (some container inits) it stays listed."""
    procs = Path("/proc")
    if not procs.joinpath("self", "stat").exists():  # no /proc (not Linux): ask the kernel
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in procs.glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


@dataclass
class Stack:
    deployment: str
    pg_dsn: str
    amqp_url: str
    run_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Secrets of this deployment: fresh per stack, so nothing runs on the development defaults.
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "ONTRACK_TENANT_ROLE_SECRET": secrets.token_urlsafe(32),
            "ONTRACK_TOKEN_HASH_KEY": secrets.token_urlsafe(32),
        }
    )

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pki.ensure(self.pki_dir, self.deployment)
        for s in SERVICES:
            self.ports.setdefault(s, free_port())
            for role in ("api", "worker"):
                self.ports.setdefault(f"{s}-{role}-metrics", free_port())
        self.ports.setdefault("gateway", free_port())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONTRACK_")}
        env.update(
            {
                "ONTRACK_DEPLOYMENT": self.deployment,
                "ONTRACK_PG_CLUSTERS": f'{{"main": "{self.pg_dsn}"}}',
                "ONTRACK_AMQP_URL": self.amqp_url,
                "ONTRACK_READY_DIR": str(self.run_dir),
                "PYTHONUNBUFFERED": "1",
                **self.secrets,
                **pki.env(self.pki_dir),
                **{f"ONTRACK_{s.upper()}_GRPC_PORT": str(self.ports[s]) for s in SERVICES},
                "ONTRACK_GATEWAY_PORT": str(self.ports["gateway"]),
                "ONTRACK_METRICS_PORTS": json.dumps(
                    {
                        f"{s}-{r}": self.ports[f"{s}-{r}-metrics"]
                        for s in SERVICES
                        for r in ("api", "worker")
                    }
                ),
            }
        )
        env.update(self.extra_env)
        return env

    def settings(self, **overrides: Any) -> config.Settings:
        """Settings of this deployment for a process of the caller's own (bench, tests): the
        stack's databases, broker user and secrets, with ``overrides`` on top."""
        values: dict[str, Any] = {
            "deployment": self.deployment,
            "pg_clusters": {"main": self.pg_dsn},
            "amqp_url": self.amqp_url,
            "tenant_role_secret": self.secrets["ONTRACK_TENANT_ROLE_SECRET"],
            "token_hash_key": self.secrets["ONTRACK_TOKEN_HASH_KEY"],
            **{k.removeprefix("ONTRACK_").lower(): v for k, v in pki.env(self.pki_dir).items()},
        }
        return config.load(**{**values, **overrides})

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    @property
    def pki_dir(self) -> Path:
        return self.run_dir / "pki"

    def material(self, identity: str) -> tls.Material:
        """The certificate, key and CA of `identity` in this stack's PKI."""
        d = self.pki_dir
        return tls.Material(
            (d / "ca.pem").read_bytes(),
            (d / f"{identity}.pem").read_bytes(),
            (d / f"{identity}-key.pem").read_bytes(),
        )

    def aio_channel(self, service: str, identity: str = "operator") -> grpc.aio.Channel:
        """As `channel`, for grpc.aio (open it inside the running event loop)."""
        return grpc.aio.secure_channel(
            self.target(service),
            tls.channel_credentials(self.material(identity)),
            options=tls.server_name_options(service),
        )

    def channel(self, service: str, identity: str = "operator", options=()) -> grpc.Channel:
        """A bare mutual-TLS channel to `service`'s api presenting `identity`'s certificate."""
        return grpcclient.secure_channel(
            self.target(service), service, self.material(identity), options
        )

    # -- processes --------------------------------------------------------------------------

    def start(self, names: list[str] | None = None, gateway: bool = True) -> None:
        """Start the processes `names` (default: all), each leading a process group of its
        own, so that `stop` reaches whatever they start in turn."""
        table = processes(gateway)
        for name in names or list(table):
            (self.run_dir / f"{name}.ready").unlink(missing_ok=True)
            with open(self.run_dir / f"{name}.log", "ab") as log:
                self.procs[name] = subprocess.Popen(
                    table[name],
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    process_group=0,
                )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Every api answers its health check and every worker has started consuming
        (about 15 s on a quiet 2-core machine; 60 s was seen exceeded at load average 10)."""
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            while not self.ready(name):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; see "
                        f"{self.run_dir / (name + '.log')}:\n{self.tail(name)}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not ready after {timeout} s:\n{self.tail(name)}")
                time.sleep(0.1)

    def ready(self, name: str) -> bool:
        """The process `name` answers (api: gRPC health; gateway: /healthz; worker: its
        ready file)."""
        if name.endswith("-api"):
            service = name[:-4]
            return health_ok(self.target(service), service, self.material("operator"))
        if name == "gateway":
            return http_ok(self.ports["gateway"], "/healthz")
        return (self.run_dir / f"{name}.ready").exists()

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join((self.run_dir / f"{name}.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, names: list[str] | None = None, timeout: float = 15.0) -> None:
        """Stop the processes `names` (default: all) with their whole process groups:
        SIGTERM to each group, SIGKILL to what is left of it after `timeout` seconds. A
        child of a child is stopped too, even when its parent has already exited."""
        chosen = {n: p for n, p in self.procs.items() if names is None or n in names}
        for p in chosen.values():
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in chosen.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                p.wait()
        for n, p in chosen.items():
            # The group outlives its leader while any member runs: wait for the rest.
            while _group_alive(p.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(p.pid):
                _signal_group(p.pid, signal.SIGKILL)
            del self.procs[n]

    def restart(self, name: str) -> None:
        self.stop([name])
        self.start([name])
        self.wait_ready()

    # -- databases --------------------------------------------------------------------------

    def drop_databases(self) -> None:
        """Drop every database and role of this deployment (and nothing else)."""
        drop_deployment(self.pg_dsn, self.deployment)


def drop_deployment(pg_dsn: str, deployment: str, concurrency: int = 1) -> int:
    """Drop every database and role named `<deployment>_...` (and nothing else), forcing
    out whoever is still connected; the number of databases dropped. `concurrency`
    connections drop databases side by side (the bench drops hundreds at once)."""
    pattern = f"{deployment}\\_%"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        dbs = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)
            )
        ]

    def drop(names: list[str]) -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            for db in names:
                c.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
                )

    chunks = [dbs[i::concurrency] for i in range(concurrency) if dbs[i::concurrency]]
    with ThreadPoolExecutor(max_workers=max(1, len(chunks))) as pool:
        list(pool.map(drop, chunks))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        roles = [
            r[0]
            for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (pattern,))
        ]
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    return len(dbs)
