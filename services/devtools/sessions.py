"""Test sessions on this machine, and the sweep of what crashed ones left behind.

A test session claims a deployment name ("t" + 8 hex digits) by creating a registry entry
``<registry>/<deployment>.json`` and holding an exclusive `flock` on it for as long as its
process lives: the kernel releases the lock when the process ends, however it ends. The
entry names the session's pid and run directory (``.run/test-<deployment>``, holding its
private keys and logs). The registry is per user and machine (the system's temporary
directory), so that sessions of every checkout see each other.

`sweep` runs at the start of a session. A registry entry whose lock can be taken belongs to
a session that died without cleaning up: its orphaned processes (found by their
ONTRACK_DEPLOYMENT), databases and roles, broker user and virtual host, and run directory
are removed. An entry still locked is a running session's and is not touched; neither is
anything not in the registry (bench deployments "b...", sessions of other machines sharing
the servers, sessions older than the registry), except a run directory of this checkout
whose recorded owner pid is gone (or, recorded nowhere, untouched for an hour and no process
of its deployment running).

A session that ends normally (`Session.end`) removes its private keys always and its run
directory unless it failed, when the logs are kept for reading.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ontrackio.devtools import infra
from ontrackio.devtools.stack import drop_deployment

NAME = re.compile(r"t[0-9a-f]{8}")
RUN_PREFIX = "test-"
LEGACY_GRACE_SECONDS = 3600


def default_registry() -> Path:
    return Path(tempfile.gettempdir()) / f"ontrackio-test-sessions-{os.getuid()}"


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` (to tell it from a later process given the same
    pid), None if there is no such process or no /proc to ask."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    now = _start_time(pid)
    if now is not None:
        return started is None or now == started
    try:
        os.kill(pid, 0)  # no /proc (not Linux): the pid alone
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def processes_of(deployment: str) -> list[int]:
    """Pids of this user's processes started with ONTRACK_DEPLOYMENT=`deployment` (their
    environment at start, as /proc shows it), never this process. Empty without /proc."""
    marker = f"ONTRACK_DEPLOYMENT={deployment}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        if marker in env:
            found.append(pid)
    return found


@dataclass
class Session:
    """This process's claim on a deployment name (see the module's docstring)."""

    deployment: str
    run_dir: Path
    entry: Path
    _fd: int = field(repr=False)

    @classmethod
    def claim(cls, runs: Path, registry: Path | None = None) -> Session:
        """A fresh deployment name, registered and locked before anything is made for it, so
        that a crash at any later point leaves an entry the next sweep finds."""
        registry = registry or default_registry()
        registry.mkdir(mode=0o700, parents=True, exist_ok=True)
        deployment = "t" + uuid.uuid4().hex[:8]
        run_dir = runs / f"{RUN_PREFIX}{deployment}"
        entry = registry / f"{deployment}.json"
        # Locked under a temporary name, then renamed: no sweep ever sees it unlocked.
        tmp = registry / f".{deployment}.claiming"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        record = {"pid": os.getpid(), "started": _start_time(os.getpid()), "run_dir": str(run_dir)}
        os.write(fd, json.dumps(record).encode())
        os.replace(tmp, entry)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "session.json").write_text(json.dumps(record))
        return cls(deployment, run_dir, entry, fd)

    def end(self, keep_logs: bool) -> None:
        """Remove the private keys, and the whole run directory unless `keep_logs`; then
        give up the claim."""
        shutil.rmtree(self.run_dir / "pki", ignore_errors=True)
        if not keep_logs:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.entry.unlink(missing_ok=True)
        os.close(self._fd)


def sweep(found: infra.Infra, runs: Path, registry: Path | None = None) -> list[str]:
    """Remove what dead sessions left (see the module's docstring); the deployments swept."""
    registry = registry or default_registry()
    swept = []
    for entry in sorted(registry.glob("t*.json")) if registry.is_dir() else []:
        if NAME.fullmatch(entry.stem) and _sweep_entry(found, entry):
            swept.append(entry.stem)
    for run_dir in sorted(runs.glob(f"{RUN_PREFIX}t*")) if runs.is_dir() else []:
        deployment = run_dir.name.removeprefix(RUN_PREFIX)
        if not NAME.fullmatch(deployment) or (registry / f"{deployment}.json").exists():
            continue  # not the harness's, or its entry judges it (above, or still running)
        if not _run_dir_live(run_dir, deployment):
            shutil.rmtree(run_dir, ignore_errors=True)
            swept.append(deployment)
    return swept


def _sweep_entry(found: infra.Infra, entry: Path) -> bool:
    try:
        fd = os.open(entry, os.O_RDWR)
    except FileNotFoundError:
        return False  # ended, or swept by another session meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its session is running
        with contextlib.suppress(FileNotFoundError):
            if os.stat(entry).st_ino == os.fstat(fd).st_ino:
                remove(found, entry.stem, _run_dir_of(fd, entry.stem))
                entry.unlink()
                return True
        return False  # another sweep removed it (and what it named) meanwhile
    finally:
        os.close(fd)


def _run_dir_of(fd: int, deployment: str) -> Path | None:
    try:
        path = Path(json.loads(os.pread(fd, 65536, 0))["run_dir"])
    except (ValueError, KeyError, TypeError, OSError):
        return None
    return path if path.name == f"{RUN_PREFIX}{deployment}" else None


def _run_dir_live(run_dir: Path, deployment: str) -> bool:
    try:
        record = json.loads((run_dir / "session.json").read_text())
        return _alive(int(record["pid"]), record.get("started"))
    except FileNotFoundError:
        # Made without a session record (older code, or a test's own Stack): live while a
        # process of it runs, or while it is fresh (its processes may not have started yet).
        fresh = time.time() - run_dir.stat().st_mtime < LEGACY_GRACE_SECONDS
        return fresh or bool(processes_of(deployment))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def remove(found: infra.Infra, deployment: str, run_dir: Path | None) -> None:
    """Remove everything of the dead session of `deployment`: processes, databases and
    roles, broker user and vhost, run directory."""
    if not NAME.fullmatch(deployment):
        raise ValueError(f"not a test deployment name: {deployment!r}")
    for pid in processes_of(deployment):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    drop_deployment(found.pg_dsn, deployment)
    infra.DeploymentBroker("", vhost=deployment, user=deployment, ctl=found.ctl()).delete()
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)
