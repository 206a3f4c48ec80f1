"""Start PostgreSQL and RabbitMQ from locally installed server binaries (no Docker), with
their data under the project's run folder. Used by `make run` only when neither is
reachable at the configured URL."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from ontrackio.devtools.infra import reachable


class NotInstalled(Exception):
    """The server binaries are missing; the message says what to install."""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def start_postgres(dsn: str, data: Path) -> None:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise NotInstalled(
            "PostgreSQL is not reachable and not installed: install postgresql "
            "(or Docker), or set ONTRACK_PG_CLUSTERS to a reachable server"
        )
    port = str(urlsplit(dsn).port or 5432)
    user = urlsplit(dsn).username or "postgres"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [initdb, "-D", str(data), "-U", user, "--auth=trust"], check=True, **_as_owner(data)
        )
    subprocess.run(
        [
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-o",
            f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        **_as_owner(data),
    )


def start_rabbitmq(base: Path) -> None:
    server = shutil.which("rabbitmq-server")
    if not server:
        raise NotInstalled(
            "RabbitMQ is not reachable and not installed: install "
            "rabbitmq-server (or Docker), or set ONTRACK_AMQP_URL"
        )
    base.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ, RABBITMQ_MNESIA_BASE=str(base / "mnesia"), RABBITMQ_LOG_BASE=str(base / "log")
    )
    subprocess.run([server, "-detached"], check=True, env=env)


def _as_owner(data: Path) -> dict:
    """initdb refuses to run as root: run it as the data folder's owner 'postgres'."""
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise NotInstalled("running as root needs a 'postgres' system user") from None
    os.chown(data, pw.pw_uid, pw.pw_gid)
    return {"user": pw.pw_uid, "group": pw.pw_gid}


def start_missing(pg_dsn: str, amqp_url: str, base: Path) -> None:
    if not reachable(pg_dsn):
        start_postgres(pg_dsn, base / "postgres")
    if not reachable(amqp_url):
        start_rabbitmq(base / "rabbitmq")
