"""Find PostgreSQL and RabbitMQ for local runs and tests.

Order: URLs from the environment (ONTRACK_TEST_PG_DSN / ONTRACK_TEST_AMQP_URL), then the
default local ports, then containers started by testcontainers where Docker runs, else a
clear message naming what to install.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


class InfraMissing(Exception):
    """Neither a running server nor a way to start one; the message says what to install."""


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


@dataclass
class Infra:
    pg_dsn: str
    amqp_url: str  # the broker's root URL; deployments add their own virtual host
    containers: tuple = ()

    def with_vhost(self, vhost: str) -> str:
        parts = urlsplit(self.amqp_url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + vhost.lstrip("/"), "", ""))

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
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    pg = PostgresContainer(
        "postgres:15", username="postgres", password="postgres", dbname="postgres"
    ).start()
    mq = RabbitMqContainer("rabbitmq:3.13").start()
    dsn = (
        f"postgresql://postgres:postgres@{pg.get_container_host_ip()}:"
        f"{pg.get_exposed_port(5432)}/postgres"
    )
    amqp = f"amqp://guest:guest@{mq.get_container_host_ip()}:{mq.get_exposed_port(5672)}/"
    return Infra(dsn, amqp, (pg, mq))


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)


def can_manage_vhosts() -> bool:
    return shutil.which("rabbitmqctl") is not None and rabbitmqctl("list_vhosts").returncode == 0


def create_vhost(vhost: str, user: str = "guest") -> None:
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


def delete_vhost(vhost: str) -> None:
    rabbitmqctl("delete_vhost", vhost)
