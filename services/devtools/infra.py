"""Find PostgreSQL and RabbitMQ for local runs and tests, and give a deployment its broker.

Order: URLs from the environment (ONTRACK_TEST_PG_DSN / ONTRACK_TEST_AMQP_URL), then the
default local ports, then containers started by testcontainers where Docker runs, else a
clear message naming what to install.

A test or bench deployment gets a broker account of its own (`DeploymentBroker`): a virtual
host and a user, both named after the deployment, the user with a random password and
permissions on that virtual host only, both deleted at the end. The system under test runs
outside development mode, where the `guest` user is refused. They are made with
`rabbitmqctl`: the local one for a broker on this machine, the container's own (docker exec)
for a broker testcontainers started, so a laptop with Docker needs no RabbitMQ installed.
Either way a failure stops the caller (`BrokerSetupFailed`): never a fallback to `/`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class InfraMissing(Exception):
    """Neither a running server nor a way to start one; the message says what to install."""


class BrokerSetupFailed(Exception):
    """A deployment's virtual host or user could not be created; the message says why (it
    never carries the password)."""


def reachable(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


# Runs rabbitmqctl with these arguments (secrets only on stdin), somewhere that reaches the
# broker: returns the completed process, raises BrokerSetupFailed if it cannot run at all.
Ctl = Callable[..., subprocess.CompletedProcess]


@dataclass
class Infra:
    pg_dsn: str
    amqp_url: str  # the broker's root URL; deployments add their own virtual host
    containers: tuple = ()
    broker_container: Any = None  # the RabbitMQ container among `containers`, if started

    def ctl(self) -> Ctl:
        """How to run rabbitmqctl against this broker: inside its container when
        testcontainers started it, else the local command."""
        if self.broker_container is not None:
            return ContainerCtl(self.broker_container)
        return local_ctl

    def with_account(self, user: str, password: str, vhost: str) -> str:
        """The broker's URL for `user` on `vhost`."""
        parts = urlsplit(self.amqp_url)
        host = parts.hostname or "127.0.0.1"
        if ":" in host:  # an IPv6 address
            host = f"[{host}]"
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), "", ""))

    def close(self) -> None:
        for c in self.containers:
            c.stop()


def find() -> Infra:
    pg = os.environ.get("ONTRACK_TEST_PG_DSN", DEFAULT_PG)
    amqp = os.environ.get("ONTRACK_TEST_AMQP_URL", DEFAULT_AMQP)
    if reachable(pg) and reachable(amqp):
        return Infra(pg, amqp)
    if "ONTRACK_TEST_PG_DSN" not in os.environ and docker_available():
        return _containers()
    missing = [n for n, u in (("PostgreSQL", pg), ("RabbitMQ", amqp)) if not reachable(u)]
    raise InfraMissing(
        f"{' and '.join(missing)} not reachable and no Docker engine to start them: install "
        "postgresql and rabbitmq-server (or Docker), or set ONTRACK_TEST_PG_DSN / "
        "ONTRACK_TEST_AMQP_URL"
    )


def _containers() -> Infra:  # pragma: no cover - only where Docker runs
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy
    from testcontainers.postgres import PostgresContainer

    pg = PostgresContainer(
        "postgres:15", username="postgres", password="postgres", dbname="postgres"
    ).start()
    # The generic container, not testcontainers' RabbitMqContainer (which needs pika). An
    # administrator of its own; deployments get their own user and vhost from its rabbitmqctl.
    user, password = "ontrack", secrets.token_urlsafe(24)
    mq = (
        DockerContainer("rabbitmq:3.13")
        .with_env("RABBITMQ_DEFAULT_USER", user)
        .with_env("RABBITMQ_DEFAULT_PASS", password)
        .with_exposed_ports(5672)
        .waiting_for(LogMessageWaitStrategy("Server startup complete"))
        .start()
    )
    dsn = (
        f"postgresql://postgres:postgres@{pg.get_container_host_ip()}:"
        f"{pg.get_exposed_port(5432)}/postgres"
    )
    amqp = f"amqp://{user}:{password}@{mq.get_container_host_ip()}:{mq.get_exposed_port(5672)}/"
    return Infra(dsn, amqp, (pg, mq), broker_container=mq)


def rabbitmqctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The local rabbitmqctl (FileNotFoundError if there is none)."""
    return subprocess.run(
        ["rabbitmqctl", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def can_manage_vhosts() -> bool:
    return shutil.which("rabbitmqctl") is not None and rabbitmqctl("list_vhosts").returncode == 0


def local_ctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The local rabbitmqctl as a `Ctl`: BrokerSetupFailed if it is missing or hangs."""
    if shutil.which("rabbitmqctl") is None:
        raise BrokerSetupFailed(
            "rabbitmqctl not found: it is needed to give the deployment its own RabbitMQ "
            "virtual host and user (install rabbitmq-server, or run the broker in Docker)"
        )
    try:
        return rabbitmqctl(*args, stdin=stdin)
    except subprocess.TimeoutExpired:
        raise BrokerSetupFailed(f"rabbitmqctl {args[0]} timed out after 60 s") from None


@dataclass
class ContainerCtl:
    """rabbitmqctl inside the broker's container (testcontainers' `exec`): nothing of
    RabbitMQ needs to be installed where the tests run. Standard input is handed over in an
    environment variable of the exec (never on a command line), which a shell pipes in."""

    container: Any

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        from testcontainers.core.container import ExecConfig

        command, env = ["rabbitmqctl", *args], None
        if stdin is not None:
            command = ["sh", "-c", 'printf "%s\\n" "$CTL_STDIN" | rabbitmqctl "$@"', "sh", *args]
            env = {"CTL_STDIN": stdin.removesuffix("\n")}
        try:
            code, output = self.container.exec(ExecConfig(command=command, environment=env))
        except Exception as exc:  # noqa: BLE001 - docker's errors: the container is gone
            raise BrokerSetupFailed(
                f"rabbitmqctl {args[0]} in the broker's container failed: {type(exc).__name__}"
            ) from None
        text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
        return subprocess.CompletedProcess(command, code, stdout=text, stderr="")


def _ctl(ctl: Ctl, *args: str, stdin: str | None = None) -> None:
    """Run rabbitmqctl through `ctl`; BrokerSetupFailed, naming the command and
    rabbitmqctl's own last error line, if it fails (a secret is only ever passed on stdin,
    so never shown)."""
    r = ctl(*args, stdin=stdin)
    if r.returncode != 0:
        lines = [line for line in (r.stderr or r.stdout).splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit status {r.returncode}"
        raise BrokerSetupFailed(f"rabbitmqctl {args[0]} failed: {why}")


@dataclass
class DeploymentBroker:
    """A deployment's own virtual host and user on the broker of `found`: `url` connects as
    that user to that virtual host. Made (and removed) with `found.ctl()`: on a broker of
    testcontainers too, whose `/` belongs to its administrator, not to a deployment."""

    url: str
    vhost: str | None = None
    user: str | None = None
    ctl: Ctl = field(default=local_ctl, repr=False)

    @classmethod
    def create(cls, found: Infra, deployment: str) -> DeploymentBroker:
        """Create the virtual host and user; BrokerSetupFailed (after removing what was
        created) if rabbitmqctl is missing or fails: never a fallback to another vhost."""
        password = secrets.token_urlsafe(24)
        made = cls(found.with_account(deployment, password, deployment), ctl=found.ctl())
        try:  # each is recorded once created, so that only what this call made is removed
            _ctl(made.ctl, "add_vhost", deployment)
            made.vhost = deployment
            _ctl(made.ctl, "add_user", deployment, stdin=password + "\n")
            made.user = deployment
            _ctl(made.ctl, "set_permissions", "-p", deployment, deployment, ".*", ".*", ".*")
        except BrokerSetupFailed:
            made.delete()
            raise
        return made

    def delete(self) -> None:
        """Remove the user and the virtual host (with everything in it). Best effort: one
        already gone is not an error (a crashed session's sweep calls this blindly)."""
        for command, name in (("delete_user", self.user), ("delete_vhost", self.vhost)):
            if name:
                try:
                    self.ctl(command, name)
                except BrokerSetupFailed:
                    pass
