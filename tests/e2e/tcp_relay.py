"""A TCP relay the tests control: a process pointed at it instead of a real server sees that
server come and go when the test says so, and nobody else is disturbed.

Bytes are copied unchanged (mutual TLS passes through: each side still checks the other's
certificate), so the relay is outside the system and replaces nothing in it.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def port_outside_ephemeral_range() -> int:
    """A free port the kernel never hands out as a connection's source port. While the
    relay is cut, a client retrying connections to an ephemeral-range port can be given
    that very port as its own source port (a TCP self-connect), and the relay could not
    listen there again."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default lower bound
    for _ in range(200):
        port = random.randrange(10000, max(10001, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


class TcpRelay:
    """Forwards connections made to ``127.0.0.1:port`` to ``127.0.0.1:target_port``.

    ``cut()`` closes every relayed connection and stops listening, so the target looks down
    (connections refused); ``restore()`` listens on the same port again. Use as a context
    manager: it is cut when the block ends."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = port_outside_ephemeral_range()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.accepted = 0  # connections relayed so far
        self.restore()

    def restore(self) -> None:
        """Listen (again) on ``port``."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)  # the accept loop notices cut() within this
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening and close every relayed connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            live, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for s in live:
            _drop(s)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            with self._lock:
                if self._listener is not listener:
                    return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _drop(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _drop(client)
                    _drop(upstream)
                    return
                self._sockets |= {client, upstream}
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {src, dst}
            _drop(src)
            _drop(dst)

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *exc) -> None:
        self.cut()


def _drop(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
