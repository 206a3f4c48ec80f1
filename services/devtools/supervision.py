"""Process supervision for `make run`: supervisord (the `supervisor` library) runs a set of
programs, and this module drives it and keeps the developer informed.

supervisord restarts a program that crashes; one that crashes again within `startsecs` of
starting is retried with a growing delay (1 s, 2 s, 3 s…) and, after `startretries` such
tries, left in FATAL. A program that crashes after running a while is restarted at once;
should it crash more than `max_restarts` times within `restart_window` seconds this module
stops it. Either way the console says so (`GAVE UP …`), once, instead of looping silently.
Every program's output, and supervisord's own log, stream to the console, each line led by
its name; the files stay in the run directory.

Generated files live in `<run_dir>/supervisor/`: the configuration (mode 0600: it holds
the control socket's random password, never a service secret: programs inherit the
environment of `start`), the control socket, supervisord's log and pid file, and one log
per program. Every program runs in a process group of its own; stopping sends SIGTERM to
the whole group and, after `stopwaitsecs`, SIGKILL.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections import deque
from pathlib import Path
from typing import TextIO

from supervisor.xmlrpc import SupervisorTransport

SUPERVISOR = "supervisor"  # the name supervisord's own log lines carry on the console


class SupervisionError(Exception):
    """supervisord did not start or answer; the message says what to look at."""


def _ini(value: str) -> str:
    """`value` for supervisord's configuration, which expands %(name)s."""
    return value.replace("%", "%%")


class Supervisor:
    """Runs `programs` (name -> command line) under supervisord, from `cwd`, with `env` as
    every program's environment; console lines go to `out`.

    `start` returns once supervisord answers; `states`/`pid` read its view; `stop` stops
    every program and supervisord and returns supervisord's exit status. Not reentrant:
    one owner thread calls start/stop; the console and monitor threads are internal."""

    def __init__(
        self,
        run_dir: Path,
        programs: dict[str, list[str]],
        *,
        cwd: Path,
        env: dict[str, str],
        out: TextIO = sys.stdout,
        startsecs: int = 5,
        startretries: int = 3,
        stopwaitsecs: int = 15,
        max_restarts: int = 5,
        restart_window: float = 60.0,
    ) -> None:
        self.dir = run_dir / "supervisor"
        self.programs = dict(programs)
        self.cwd, self.env, self.out = cwd, dict(env), out
        self.startsecs, self.startretries, self.stopwaitsecs = startsecs, startretries, stopwaitsecs
        self.max_restarts, self.restart_window = max_restarts, restart_window
        self.config = self.dir / "supervisord.conf"
        self.socket = self._socket_path()
        self._password = secrets.token_urlsafe(18)
        self._proc: subprocess.Popen | None = None
        self._rpc_lock = threading.Lock()
        self._rpc: xmlrpc.client.ServerProxy | None = None
        self._out_lock = threading.Lock()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self.given_up: set[str] = set()
        self.pids_seen: set[int] = set()

    def log_path(self, name: str) -> Path:
        return self.dir / ("supervisord.log" if name == SUPERVISOR else f"{name}.log")

    def _socket_path(self) -> Path:
        path = self.dir / "control.sock"
        if len(str(path)) < 100:  # AF_UNIX paths are limited to 107 bytes
            return path
        return Path(tempfile.mkdtemp(prefix="ontrack-sv-")) / "control.sock"

    # -- configuration -----------------------------------------------------------------------

    def write_config(self) -> Path:
        """Write supervisord's configuration and empty every log; returns its path."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "[supervisord]",
            "nodaemon=true",
            "silent=true",  # its log is streamed from the file, like every program's
            f"logfile={_ini(str(self.log_path(SUPERVISOR)))}",
            "logfile_maxbytes=0",
            f"pidfile={_ini(str(self.dir / 'supervisord.pid'))}",
            f"childlogdir={_ini(str(self.dir))}",
            f"directory={_ini(str(self.cwd))}",
        ]
        if os.getuid() == 0:  # says whom to run as, so supervisord does not warn about root
            lines.append(f"user={pwd.getpwuid(0).pw_name}")
        lines += [
            "",
            "[unix_http_server]",
            f"file={_ini(str(self.socket))}",
            "chmod=0700",
            "username=ontrack",
            f"password={self._password}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{_ini(str(self.socket))}",
            "username=ontrack",
            f"password={self._password}",
        ]
        for name, command in self.programs.items():
            lines += [
                "",
                f"[program:{name}]",
                f"command={_ini(shlex.join(command))}",
                f"directory={_ini(str(self.cwd))}",
                "autostart=true",
                "autorestart=true",
                f"startsecs={self.startsecs}",
                f"startretries={self.startretries}",
                "stopsignal=TERM",
                f"stopwaitsecs={self.stopwaitsecs}",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={_ini(str(self.log_path(name)))}",
                "stdout_logfile_maxbytes=50MB",
                "stdout_logfile_backups=2",
            ]
        self.config.write_text("\n".join(lines) + "\n")
        self.config.chmod(0o600)
        for name in [SUPERVISOR, *self.programs]:
            self.log_path(name).write_bytes(b"")
        return self.config

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Start supervisord (in a session of its own: a Ctrl-C reaches the owner, who
        calls `stop`), wait until it answers, then stream the logs and watch the programs."""
        self.write_config()
        self.socket.unlink(missing_ok=True)
        supervisord = Path(sys.executable).parent / "supervisord"
        stderr = self.dir / "supervisord.stderr"  # a file: a pipe nobody reads could fill
        with open(stderr, "wb") as err_file:
            self._proc = subprocess.Popen(
                [str(supervisord), "-c", str(self.config)],
                env=self.env,
                cwd=self.dir,  # it changes to `cwd` itself (and says so if it cannot)
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err_file,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                said = stderr.read_text(errors="replace").splitlines()
                err = " ".join(ln.strip() for ln in said if ln.strip() and "For help" not in ln)
                raise SupervisionError(
                    f"supervisord exited with {self._proc.returncode}: {err or 'no message'} "
                    f"(its log: {self.log_path(SUPERVISOR)})"
                )
            try:
                if self._call("getState")["statename"] == "RUNNING":
                    break
            except (OSError, xmlrpc.client.Error):
                pass
            if time.monotonic() > deadline:
                self._kill()
                raise SupervisionError(f"supervisord did not answer within {timeout:g} s")
            time.sleep(0.1)
        self._spawn(self._stream, "supervision-console")
        self._spawn(self._watch, "supervision-monitor")

    def running(self) -> bool:
        """supervisord is still running."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float | None = None) -> int:
        """Stop every program (SIGTERM to its group, SIGKILL after stopwaitsecs) and
        supervisord; returns supervisord's exit status. Idempotent."""
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._say("stopping every process")
            self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout if timeout is not None else self.stopwaitsecs + 15)
        except subprocess.TimeoutExpired:
            self._kill()
        self._done.set()
        for t in self._threads:
            t.join(5)
        self._threads.clear()
        return self._proc.returncode

    def _kill(self) -> None:
        """Last resort: supervisord and every program group it started, SIGKILLed."""
        for pid in self.pids_seen:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    # -- supervisord's view ------------------------------------------------------------------

    def _call(self, method: str, *args):
        with self._rpc_lock:
            if self._rpc is None:
                transport = SupervisorTransport("ontrack", self._password, f"unix://{self.socket}")
                self._rpc = xmlrpc.client.ServerProxy("http://localhost", transport=transport)
            try:
                return getattr(self._rpc.supervisor, method)(*args)
            except (OSError, xmlrpc.client.Error):
                self._rpc = None  # a fresh connection next time
                raise

    def processes(self) -> dict[str, dict]:
        """Each program's state as supervisord reports it (statename, pid, spawnerr…)."""
        return {p["name"]: p for p in self._call("getAllProcessInfo")}

    def states(self) -> dict[str, str]:
        return {name: p["statename"] for name, p in self.processes().items()}

    def pid(self, name: str) -> int:
        """The program's current pid (0 when not running)."""
        return self.processes()[name]["pid"]

    # -- console -----------------------------------------------------------------------------

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _print(self, name: str, line: str) -> None:
        width = max(len(n) for n in [SUPERVISOR, *self.programs])
        with self._out_lock:
            self.out.write(f"{name:<{width}} | {line}\n")
            self.out.flush()

    def _say(self, message: str) -> None:
        self._print(SUPERVISOR, message)

    def _stream(self) -> None:
        """Follow every log file (a rotated one is reopened) until stopped, then drain."""
        tails = {name: _Tail(self.log_path(name)) for name in [SUPERVISOR, *self.programs]}
        while True:
            done = self._done.is_set()  # read before the last pass, so nothing is left behind
            idle = True
            for name, tail in tails.items():
                for line in tail.lines():
                    idle = False
                    self._print(name, line)
            if done:
                break
            if idle:
                time.sleep(0.1)
        for tail in tails.values():
            tail.close()

    def _watch(self) -> None:
        """Report restarts and give-ups; stop a program that crashes too often."""
        states: dict[str, str] = {}
        pids: dict[str, int] = {}  # the last pid each program ran with
        restarts: dict[str, deque] = {name: deque() for name in self.programs}
        while not self._done.wait(0.25):
            try:
                now_states = self.processes()
            except (OSError, xmlrpc.client.Error):
                continue  # supervisord is going away; stop() ends this loop
            now = time.monotonic()
            for name, p in now_states.items():
                state, pid, before = p["statename"], p["pid"], states.get(name)
                states[name] = state
                if name in self.given_up:
                    if state == "RUNNING":  # started again by hand
                        self.given_up.discard(name)
                    continue
                if pid:
                    self.pids_seen.add(pid)
                    old = pids.get(name)
                    pids[name] = pid
                    if old and old != pid:
                        self._restarted(name, pid, restarts[name], now)
                if state == "BACKOFF" and before != "BACKOFF":
                    self._say(f"{name} exited too quickly; it is retried with backoff")
                elif state == "FATAL":
                    self._give_up(
                        name,
                        f"it kept exiting within {self.startsecs} s of starting "
                        f"({self.startretries} retries)",
                    )

    def _restarted(self, name: str, pid: int, window: deque, now: float) -> None:
        window.append(now)
        while window and now - window[0] > self.restart_window:
            window.popleft()
        self._say(
            f"{name} crashed and was restarted as pid {pid} "
            f"({len(window)} restart(s) in the last {self.restart_window:g} s)"
        )
        if len(window) > self.max_restarts:
            why = f"it crashed {len(window)} times in {self.restart_window:g} s"
            self._give_up(name, why, stop=True)

    def _give_up(self, name: str, why: str, stop: bool = False) -> None:
        self.given_up.add(name)
        if stop:
            try:
                self._call("stopProcess", name, False)
            except (OSError, xmlrpc.client.Error):
                pass
        self._say(
            f"GAVE UP on {name}: {why}. Its log: {self.log_path(name)}. Once fixed: "
            f"supervisorctl -c {self.config} start {name}"
        )


class _Tail:
    """Complete lines appended to a file since the last call; reopens it when rotated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = None
        self._inode = None
        self._partial = b""

    def lines(self) -> list[str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        data = self._partial
        if self._file is None or st.st_ino != self._inode or st.st_size < self._file.tell():
            if self._file is not None and st.st_ino != self._inode:
                data += self._file.read()  # the rest of the rotated file first
            self.close()
            self._file, self._inode = open(self.path, "rb"), st.st_ino
        data += self._file.read()
        *complete, self._partial = data.split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in complete]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
