"""`make run`: the whole system on this machine, with a demo tenant.

Uses PostgreSQL and RabbitMQ at the configured URLs when reachable; otherwise starts them
(Docker compose from infra/ where Docker runs, else locally installed server binaries
with data under .run/), else stops with a message naming what to install. Then runs
every process under supervisord (devtools/supervision.py: a crashed process is restarted,
one that keeps crashing is given up on, both said on the console), waits until all are
ready, creates the demo tenant and prints how to reach it. Ctrl-C or SIGTERM stops it all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from ontrackio.core import config, tls
from ontrackio.devtools import infra, localservers, pki
from ontrackio.devtools.stack import ROOT, health_ok, processes
from ontrackio.devtools.supervision import SupervisionError, Supervisor

DEMO = "demo"


def fail(message: str) -> None:
    print(f"make run: {message}", file=sys.stderr)
    raise SystemExit(1)


def ensure_infra(settings) -> None:
    pg = settings.pg_dsn(settings.pg_control_cluster)
    amqp = settings.amqp_url.get_secret_value()
    if infra.reachable(pg) and infra.reachable(amqp):
        return
    if infra.docker_available():
        print("starting PostgreSQL and RabbitMQ with docker compose (infra/docker-compose.yml)")
        subprocess.run(
            [
                "docker",
                "compose",
                "-f",
                str(ROOT / "infra" / "docker-compose.yml"),
                "up",
                "-d",
                "--wait",
            ],
            check=True,
        )
    else:
        try:
            localservers.start_missing(pg, amqp, ROOT / ".run" / "servers")
        except localservers.NotInstalled as exc:
            fail(str(exc))
    deadline = time.monotonic() + 60
    while not (infra.reachable(pg) and infra.reachable(amqp)):
        if time.monotonic() > deadline:
            fail("PostgreSQL or RabbitMQ did not come up within 60 s")
        time.sleep(0.5)


def wait_ready(
    settings, ready_dir: Path, supervisor: Supervisor, stopping: threading.Event, timeout=90
) -> None:
    from ontrackio.catalogue import SERVICES

    deadline = time.monotonic() + timeout
    pending = [f"{s}-api" for s in SERVICES] + [f"{s}-worker" for s in SERVICES]
    while pending:
        if stopping.is_set():
            raise SystemExit(130)
        if not supervisor.running():
            fail("supervisord exited during start-up; see the log above")
        if supervisor.given_up:
            fail(f"gave up on {', '.join(sorted(supervisor.given_up))} during start-up")
        if time.monotonic() > deadline:
            fail(f"not ready after {timeout:g} s: {', '.join(pending)}")
        name = pending[0]
        if name.endswith("-api"):
            service = name[:-4]
            ok = health_ok(settings.grpc_target(service), service, tls.load(settings, "operator"))
        else:
            ok = (ready_dir / f"{name}.ready").exists()
        if ok:
            pending.pop(0)
        else:
            time.sleep(0.2)


def create_demo(settings) -> None:
    from ontrackio.core import grpcclient
    from ontrackio.identity.v1 import identity_pb2 as pb
    from ontrackio.identity.v1 import identity_pb2_grpc as pb_grpc

    stub = pb_grpc.TenantServiceStub(grpcclient.channel(settings, "identity", "operator", 10))
    try:
        stub.CreateTenant(
            pb.CreateTenantRequest(slug=DEMO, name="Demo GmbH", tier=pb.TIER_BUSINESS)
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    deadline = time.monotonic() + 30
    while stub.GetTenant(pb.GetTenantRequest(slug=DEMO)).status != pb.TENANT_STATUS_ACTIVE:
        if time.monotonic() > deadline:
            fail("the demo tenant did not become active within 30 s")
        time.sleep(0.2)


DEMO_OWNER = "owner@demo.example"


def demo_owner_link(settings, origin: str) -> str | None:
    """A fresh invitation link for the demo tenant's owner (each run replaces the last)."""
    from ontrackio.core import grpcclient
    from ontrackio.identity.v1 import signin_pb2 as spb
    from ontrackio.identity.v1 import signin_pb2_grpc as sgrpc

    stub = sgrpc.SignInServiceStub(grpcclient.channel(settings, "identity", "cli", 10))
    try:
        r = stub.CreateInvitation(
            spb.CreateInvitationRequest(
                email=DEMO_OWNER, role="owner", origin=origin, return_link=True
            ),
            metadata=(*grpcclient.tenant(DEMO), ("x-ontrack-actor", "cli:make-run")),
            timeout=10,
        )
    except grpc.RpcError as exc:
        print(f"make run: no owner invitation ({exc.code().name}: {exc.details()})")
        return None
    return r.link


def demo_token() -> str | None:
    """An API token for the demo tenant, when the gateway's token commands exist."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ontrackio.cli.main",
            "--json",
            "token",
            "create",
            "--tenant",
            DEMO,
            "--scope",
            "api:read",
            "--scope",
            "api:write",
            "--scope",
            "admin",
            "--expires-in",
            "1d",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return None
    import json

    return json.loads(r.stdout).get("secret")


def main() -> None:
    # `make run` is the developer's machine: its defaults and conveniences are allowed here
    # (and in every process it starts), nowhere else.
    os.environ.setdefault("ONTRACK_DEVELOPMENT", "true")
    settings = config.settings_or_exit()
    ensure_infra(settings)
    if not settings.tls_ca_file:  # the development PKI, where settings.tls_paths looks for it
        pki.ensure(config.ROOT / ".run" / settings.deployment / "pki", settings.deployment)
    ready_dir = ROOT / ".run" / settings.deployment
    ready_dir.mkdir(parents=True, exist_ok=True)
    for f in ready_dir.glob("*.ready"):
        f.unlink()
    env = dict(
        os.environ,
        ONTRACK_READY_DIR=str(ready_dir),
        PYTHONUNBUFFERED="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    supervisor = Supervisor(ready_dir, processes(gateway=True), cwd=ROOT, env=env)
    stopping = threading.Event()

    def stop(*_):
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        supervisor.start()
    except SupervisionError as exc:
        fail(str(exc))
    try:
        wait_ready(settings, ready_dir, supervisor, stopping)
        create_demo(settings)
        token = demo_token()
        port = os.environ.get("ONTRACK_GATEWAY_PORT", "8080")
        link = demo_owner_link(settings, f"http://{DEMO}.localhost:{port}")
    except BaseException:
        supervisor.stop()
        raise
    lines = [
        "",
        "OnTrackio is running. Demo tenant: 'demo' (Demo GmbH, business tier).",
        f"  gRPC:    identity {settings.grpc_target('identity')}, inventory "
        f"{settings.grpc_target('inventory')}, privacy {settings.grpc_target('privacy')}, "
        f"evidence {settings.grpc_target('evidence')}",
        f"  CLI:     ONTRACK_DEVELOPMENT=true .venv/bin/ontrack tenant show {DEMO}",
    ]
    if token:
        lines += [
            f"  HTTP:    http://{DEMO}.localhost:{port}/api/v1/assets  (OpenAPI: /openapi.json)",
            f"  token:   {token}   (shown once; admin + api scopes, expires in 1 day)",
            f"  try:     curl -H 'Authorization: Bearer {token}' "
            f"http://{DEMO}.localhost:{port}/api/v1/assets",
        ]
    if link:
        lines += [
            f"  sign in: open {link}",
            f"           to set the password of the demo owner {DEMO_OWNER}; then",
            f"           http://{DEMO}.localhost:{port}/signin",
        ]
    lines += [
        f"  control: .venv/bin/supervisorctl -c {supervisor.config} status | restart NAME",
        "Stop with Ctrl-C.",
    ]
    print("\n".join(lines), flush=True)
    while not stopping.wait(0.5) and supervisor.running():
        pass
    sys.exit(supervisor.stop())


if __name__ == "__main__":
    main()
