"""The real process set (a deployment of its own) under `make run`'s supervision
(devtools/supervision.py, as devtools/run.py drives it): a SIGKILLed worker is restarted,
says so on the console and serves again (a new tenant is provisioned by every worker);
stopping leaves no process of the set, nor of its process groups, running."""

from __future__ import annotations

import os
import signal

import pytest

from ontrackio.devtools import infra, sessions
from ontrackio.devtools.stack import ROOT, Stack, processes
from ontrackio.devtools.supervision import Supervisor
from tests.conftest import TEST_ENV, unique
from tests.helpers import create_tenant, eventually
from tests.integration.test_supervision import Console, alive, group_alive


@pytest.fixture
def stack(infrastructure, request, kms):
    """A process set of its own (deployment, broker account, ports), so that it never meets
    the session's running system. Its deployment is claimed like a test session's
    (devtools/sessions.py: swept if this process crashes); its databases, broker account and
    private keys are removed after, its run directory too unless the test failed."""
    claimed = sessions.Session.claim(ROOT / ".run")
    broker = infra.DeploymentBroker.create(infrastructure, claimed.deployment)
    own = Stack(
        claimed.deployment,
        infrastructure.pg_dsn,
        broker.url,
        claimed.run_dir,
        extra_env=dict(TEST_ENV, **kms.env()),
    )
    failed_before = request.session.testsfailed
    try:
        yield own
    finally:
        own.drop_databases()
        broker.delete()
        claimed.end(keep_logs=request.session.testsfailed > failed_before)


@pytest.fixture
def supervised(stack):
    console = Console()
    table = processes(gateway=(ROOT / "services" / "gateway" / "main.py").exists())
    for name in table:
        (stack.run_dir / f"{name}.ready").unlink(missing_ok=True)
    sup = Supervisor(stack.run_dir, table, cwd=ROOT, env=stack.env(), out=console)
    sup.start()
    try:
        for name in table:
            eventually(lambda name=name: stack.ready(name), timeout=90)
        yield sup, console
    finally:
        sup.stop()


# Starts a whole process set of its own (up to 90 s to be ready on a loaded machine), then
# waits for a restart and a provisioning: more than the suite's 300 s is possible.
@pytest.mark.timeout(600)
def test_a_killed_worker_comes_back_and_stop_leaves_nothing(stack, supervised):
    sup, console = supervised
    eventually(lambda: set(sup.states().values()) == {"RUNNING"}, timeout=30)
    first = sup.pid("inventory-worker")
    (stack.run_dir / "inventory-worker.ready").unlink()
    os.kill(first, signal.SIGKILL)
    second = eventually(lambda: (p := sup.pid("inventory-worker")) not in (0, first) and p)
    eventually(lambda: (stack.run_dir / "inventory-worker.ready").exists(), timeout=60)
    eventually(
        lambda: f"inventory-worker crashed and was restarted as pid {second}" in console.text()
    )
    assert "exited: inventory-worker (terminated by SIGKILL; not expected)" in console.text()
    assert "inventory-worker | " in console.text()  # its log lines, named

    # The restarted worker serves: a new tenant needs every worker to provision it.
    with stack.channel("identity", "operator") as ch:
        create_tenant({"identity": ch}, unique("sv"), timeout=60)

    pids = {name: p["pid"] for name, p in sup.processes().items()}
    assert all(pids.values())
    assert sup.stop() == 0
    for name, pid in pids.items():
        eventually(lambda pid=pid: not alive(pid), timeout=5)
        assert not group_alive(pid), name
