"""What a crashed test session left on the real servers and on this machine (databases and
roles, broker user and virtual host, orphaned processes, the run directory with its private
keys) is swept by the next session's start; a running session's is not touched, nor a
deployment not in the registry. The sessions here are child processes claiming names in a
registry of the test's own, so no real session is judged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg import sql

from ontrackio.devtools import infra, sessions
from ontrackio.devtools.stack import ROOT, drop_deployment

CLAIM = (
    "import sys; from pathlib import Path; from ontrackio.devtools import sessions; "
    "s = sessions.Session.claim(Path(sys.argv[1]), Path(sys.argv[2])); "
    "print(s.deployment, flush=True); sys.stdin.read()"
)


def claim_in_child(runs, registry) -> tuple[subprocess.Popen, str]:
    """A child process that claims a session and runs until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(runs), str(registry)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    return child, child.stdout.readline().strip()


def worker_of(deployment: str) -> subprocess.Popen:
    """A process started as the stack starts its workers (ONTRACK_DEPLOYMENT set), in a
    session of its own, as an orphan whose parent died would be."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env=dict(os.environ, ONTRACK_DEPLOYMENT=deployment),
        start_new_session=True,
    )


def make_databases(dsn: str, deployment: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(f"{deployment}_identity_t"))
        )
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"{deployment}_r")))


def on_server(dsn: str, deployment: str) -> tuple[list[str], list[str]]:
    pattern = f"{deployment}\\_%"
    with psycopg.connect(dsn, autocommit=True) as conn:
        dbs = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))
        dbs = [r[0] for r in dbs]
        roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (pattern,))
        return dbs, [r[0] for r in roles]


def broker_names() -> str:
    return infra.rabbitmqctl("list_users").stdout + infra.rabbitmqctl("list_vhosts").stdout


def test_a_dead_session_s_leftovers_are_swept_and_a_live_one_s_kept(infrastructure, tmp_path):
    if not infra.can_manage_vhosts():
        pytest.fail("this test needs rabbitmqctl to create and list broker accounts")
    runs, registry = tmp_path / "runs", tmp_path / "registry"
    dead_child, dead = claim_in_child(runs, registry)
    live_child, live = claim_in_child(runs, registry)
    unregistered = "t" + uuid.uuid4().hex[:8]
    procs: list[subprocess.Popen] = []
    try:
        for d in (dead, live, unregistered):
            make_databases(infrastructure.pg_dsn, d)
        infra.DeploymentBroker.create(infrastructure, dead)
        (runs / f"test-{dead}" / "pki").mkdir()
        (runs / f"test-{dead}" / "pki" / "operator-key.pem").write_text("private")
        dead_worker, live_worker = worker_of(dead), worker_of(live)
        procs += [dead_worker, live_worker]
        dead_child.send_signal(signal.SIGKILL)  # the session crashes: no cleanup of its own
        dead_child.wait()

        swept = sessions.sweep(infrastructure, runs, registry)

        assert swept == [dead]
        assert on_server(infrastructure.pg_dsn, dead) == ([], [])
        assert dead not in broker_names()
        assert dead_worker.wait(timeout=10) == -signal.SIGKILL
        assert not (runs / f"test-{dead}").exists()
        assert not (registry / f"{dead}.json").exists()
        # The running session and the unregistered deployment keep everything.
        assert on_server(infrastructure.pg_dsn, live) == ([f"{live}_identity_t"], [f"{live}_r"])
        assert on_server(infrastructure.pg_dsn, unregistered)[0] == [f"{unregistered}_identity_t"]
        assert live_worker.poll() is None
        assert (runs / f"test-{live}").is_dir() and (registry / f"{live}.json").exists()
    finally:
        for p in procs + [dead_child]:
            if p.poll() is None:
                p.kill()
                p.wait()
        live_child.communicate("")
        for d in (dead, live, unregistered):
            drop_deployment(infrastructure.pg_dsn, d)
        infra.DeploymentBroker("", vhost=dead, user=dead).delete()
