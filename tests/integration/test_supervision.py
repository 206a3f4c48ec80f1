"""`make run`'s supervision (devtools/supervision.py) with small real programs under the
real supervisord: a SIGKILLed program comes back with a new pid and the console says so;
one that always crashes is retried with backoff, then reported as given up; every
program's output reaches the console with its name; stopping leaves nothing running, not
even a program's own children (its whole process group is stopped)."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from ontrackio.devtools.stack import ROOT
from ontrackio.devtools.supervision import SupervisionError, Supervisor
from tests.helpers import eventually

# The programs' own sleeps are their behaviour (a program that runs until it is stopped, one
# that crashes after running a while), not the test waiting: the test waits with eventually.
SLEEPER = "import time; print('sleeper up', flush=True); time.sleep(600)"
CRASHER = "import sys; print('crasher dies', flush=True); sys.exit(3)"
# Starts a grandchild in its own process group's care, then sleeps: the grandchild must go
# with it.
PARENT = (
    "import subprocess, sys, time; "
    "c = subprocess.Popen(['sleep', '600']); print('grandchild', c.pid, flush=True); "
    "time.sleep(600)"
)


class Console(io.StringIO):
    """What the supervisor printed, safe to read while it prints."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def write(self, s):
        with self.lock:
            return super().write(s)

    def text(self) -> str:
        with self.lock:
            return self.getvalue()


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, Z…), None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def parent(pid: int) -> int:
    """The process's parent pid, from the process table."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    """Running (an exited one that nobody has reaped yet, a zombie, is not)."""
    return _state(pid) not in (None, "Z")


def group_alive(pgid: int) -> bool:
    """Some process of the group still runs."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and alive(int(entry.name)):
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    return True
            except ProcessLookupError:
                continue
    return False


@pytest.fixture
def supervised(tmp_path):
    console = Console()
    sup = Supervisor(
        tmp_path,
        {
            "sleeper": [sys.executable, "-c", SLEEPER],
            "crasher": [sys.executable, "-c", CRASHER],
            "parent": [sys.executable, "-c", PARENT],
        },
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        out=console,
        startsecs=1,
        startretries=2,
        stopwaitsecs=5,
    )
    sup.start()
    yield sup, console
    sup.stop()


def test_a_killed_program_comes_back_and_one_that_always_crashes_is_given_up(supervised):
    sup, console = supervised
    first = eventually(lambda: sup.states()["sleeper"] == "RUNNING" and sup.pid("sleeper"))
    os.kill(first, signal.SIGKILL)
    second = eventually(lambda: (p := sup.pid("sleeper")) not in (0, first) and p)
    eventually(lambda: sup.states()["sleeper"] == "RUNNING")
    assert not alive(first)
    eventually(lambda: f"sleeper crashed and was restarted as pid {second}" in console.text())
    assert console.text().count("sleeper    | sleeper up") == 2  # its output, named

    eventually(lambda: sup.states()["crasher"] == "FATAL", timeout=30)
    text = eventually(lambda: "GAVE UP on crasher" in (t := console.text()) and t)
    assert "crasher exited too quickly; it is retried with backoff" in text
    assert "crasher    | crasher dies" in text
    assert text.count("crasher    | crasher dies") == 3  # the first try and two retries
    assert "gave up: crasher entered FATAL state" in text  # supervisord's own log line
    assert sup.states()["sleeper"] == "RUNNING"  # the others are untouched


def test_stop_leaves_nothing_running(supervised):
    sup, console = supervised
    eventually(lambda: all(sup.states()[n] == "RUNNING" for n in ("sleeper", "parent")))
    pids = {n: sup.pid(n) for n in ("sleeper", "parent")}
    grandchild = int(
        eventually(lambda: [ln for ln in console.text().splitlines() if "| grandchild " in ln])[
            0
        ].rsplit(" ", 1)[1]
    )
    assert alive(grandchild) and os.getpgid(grandchild) == pids["parent"]
    # supervisord is whoever started the programs: their parent in the process table.
    supervisord = parent(pids["sleeper"])
    assert supervisord == parent(pids["parent"]) and alive(supervisord)
    assert sup.stop() == 0
    assert not sup.running() and not alive(supervisord)
    for pid in [*pids.values(), grandchild]:
        eventually(lambda pid=pid: not alive(pid), timeout=5)
    for pgid in pids.values():  # each program led its own process group: all gone
        assert not group_alive(pgid)
    assert "stopping every process" in console.text()


def test_a_supervisord_that_cannot_start_is_reported_with_its_reason(tmp_path):
    missing = tmp_path / "no-such-directory"
    sup = Supervisor(
        tmp_path, {"sleeper": [sys.executable, "-c", SLEEPER]}, cwd=missing, env=dict(os.environ)
    )
    with pytest.raises(SupervisionError, match="supervisord exited with") as info:
        sup.start()
    assert "no-such-directory" in str(info.value)
    assert not sup.running()


def test_a_program_that_keeps_crashing_after_starting_is_stopped_and_reported(tmp_path):
    """supervisord restarts a program that ran past startsecs at once, forever; the
    supervision stops it once it has crashed more than max_restarts times in the window."""
    console = Console()
    # Runs 2.5 s, past startsecs (1 s), so supervisord counts it as started before it dies.
    flaky = "import time; print('flaky up', flush=True); time.sleep(2.5); raise SystemExit(1)"
    sup = Supervisor(
        tmp_path,
        {"flaky": [sys.executable, "-c", flaky], "sleeper": [sys.executable, "-c", SLEEPER]},
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        out=console,
        startsecs=1,
        max_restarts=2,
        restart_window=60,
    )
    sup.start()
    try:
        text = eventually(lambda: "GAVE UP on flaky" in (t := console.text()) and t, timeout=30)
        assert "it crashed 3 times in 60 s" in text
        assert text.count("flaky crashed and was restarted as pid") == 3
        eventually(lambda: sup.states()["flaky"] == "STOPPED")
        assert sup.states()["sleeper"] == "RUNNING"
    finally:
        sup.stop()
