"""A test session's files: its registry entry is locked while it runs, its private keys
are removed when it ends, its run directory too unless it failed (the logs are kept), and
a run directory of this checkout whose recorded owner is gone is swept. Files only: the
sweep of a dead session's databases, broker account and processes is in
tests/integration/test_harness_sweep.py."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time

import pytest

from ontrackio.devtools import infra, sessions

NO_SERVERS = infra.Infra("postgresql://unused@127.0.0.1:9/x", "amqp://u:p@127.0.0.1:9/")


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "runs", tmp_path / "registry"


def test_a_running_session_s_entry_is_locked_and_names_its_pid_and_run_dir(dirs):
    runs, registry = dirs
    s = sessions.Session.claim(runs, registry)
    try:
        assert sessions.NAME.fullmatch(s.deployment)
        assert s.run_dir == runs / f"test-{s.deployment}" and s.run_dir.is_dir()
        record = json.loads(s.entry.read_text())
        assert record["pid"] == os.getpid() and record["run_dir"] == str(s.run_dir)
        fd = os.open(s.entry, os.O_RDWR)  # a second open file: the flock conflicts
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert sessions.sweep(NO_SERVERS, runs, registry) == []
        assert s.entry.exists() and s.run_dir.exists()
    finally:
        s.end(keep_logs=False)


def test_a_session_that_passed_leaves_nothing(dirs):
    runs, registry = dirs
    s = sessions.Session.claim(runs, registry)
    (s.run_dir / "pki").mkdir()
    (s.run_dir / "pki" / "operator-key.pem").write_text("key")
    (s.run_dir / "identity-api.log").write_text("log")
    s.end(keep_logs=False)
    assert not s.run_dir.exists()
    assert list(registry.iterdir()) == []


def test_a_session_that_failed_keeps_its_logs_but_not_its_keys(dirs):
    runs, registry = dirs
    s = sessions.Session.claim(runs, registry)
    (s.run_dir / "pki").mkdir()
    (s.run_dir / "pki" / "operator-key.pem").write_text("key")
    (s.run_dir / "identity-api.log").write_text("log")
    s.end(keep_logs=True)
    assert (s.run_dir / "identity-api.log").read_text() == "log"
    assert not (s.run_dir / "pki").exists()
    assert list(registry.iterdir()) == []


def test_a_run_dir_whose_owner_is_gone_is_swept_and_a_live_owner_s_kept(dirs):
    runs, registry = dirs
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_dir, live_dir = runs / "test-tdead0001", runs / "test-tbeef0001"
    for d, pid in ((dead_dir, int(gone.stdout)), (live_dir, os.getpid())):
        (d / "pki").mkdir(parents=True)
        (d / "session.json").write_text(json.dumps({"pid": pid, "run_dir": str(d)}))
    other = runs / "test-notours"  # not a name the harness makes
    other.mkdir()

    assert sessions.sweep(NO_SERVERS, runs, registry) == ["tdead0001"]

    assert not dead_dir.exists()
    assert live_dir.exists() and other.exists()


def test_a_run_dir_without_a_session_record_is_swept_only_once_stale(dirs):
    runs, registry = dirs
    stale, fresh = runs / "test-tabc00001", runs / "test-tabc00002"
    for d in (stale, fresh):
        (d / "pki").mkdir(parents=True)
    old = time.time() - sessions.LEGACY_GRACE_SECONDS - 60
    os.utime(stale, (old, old))

    assert sessions.sweep(NO_SERVERS, runs, registry) == ["tabc00001"]

    assert not stale.exists() and fresh.exists()
