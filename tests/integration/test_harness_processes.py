"""Stack.stop stops each process with its whole process group: a child the process started
in turn is stopped too (SIGTERM), and one that ignores SIGTERM is killed once the timeout
is over, so no orphan outlives the stack. The processes here are stand-ins started through
the Stack's own `start` (its process table replaced), not the services."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ontrackio.devtools import stack as stack_module
from tests.helpers import eventually

# The stack's process: starts a grandchild (SIGTERM ignored if asked), records its pid,
# then waits to be stopped.
PARENT = """
import subprocess, sys, time
ignore = sys.argv[2] == "ignore"
code = ("import signal, time\\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if ignore else "")
        + "open(__import__('sys').argv[1], 'w').write('ready')\\n"
        + "time.sleep(600)")
grandchild = subprocess.Popen([sys.executable, "-c", code, sys.argv[1] + ".ready"])
open(sys.argv[1], "w").write(str(grandchild.pid))
time.sleep(600)
"""


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its reaper."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Running (not zombie) processes of the process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture
def parent_stack(tmp_path, monkeypatch):
    def start(mode: str) -> tuple[stack_module.Stack, int]:
        pidfile = tmp_path / f"grandchild-{mode}"
        table = {"parent": [sys.executable, "-c", PARENT, str(pidfile), mode]}
        monkeypatch.setattr(stack_module, "processes", lambda gateway=True: table)
        s = stack_module.Stack("tfeed0000", "postgresql://unused", "amqp://u:p@x/v", tmp_path)
        s.start(["parent"])
        started.append(s)
        eventually(lambda: Path(f"{pidfile}.ready").exists(), timeout=30)
        return s, int(pidfile.read_text())

    started: list[stack_module.Stack] = []
    yield start
    for s in started:
        s.stop()


def test_stop_stops_a_child_of_a_stack_process(parent_stack):
    s, grandchild = parent_stack("plain")
    assert running(grandchild)

    s.stop()

    eventually(lambda: not running(grandchild), timeout=10)  # its new parent reaps it


def test_stop_kills_a_child_that_ignores_sigterm_after_the_timeout(parent_stack):
    s, grandchild = parent_stack("ignore")
    parent = s.procs["parent"]

    s.stop(timeout=1.0)

    assert parent.returncode is not None and s.procs == {}
    eventually(lambda: not running(grandchild), timeout=10)
    assert group_members(parent.pid) == []  # nothing of the group is left running
