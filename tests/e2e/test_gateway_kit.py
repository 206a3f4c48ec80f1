"""Shared kit for the gateway's end-to-end tests (raw-socket HTTP, tenants, tokens), and the
probe tests. Raw sockets, because a client library would normalise what the tests send."""

from __future__ import annotations

import itertools
import json
import socket
from dataclasses import dataclass, field

import pytest

from ontrackio.identity.v1 import access_pb2 as apb
from ontrackio.identity.v1 import access_pb2_grpc as agrpc
from tests.conftest import unique
from tests.helpers import create_tenant, md
from tests.prom import Scrape

_sources = itertools.count(2)


def new_source() -> str:
    """A loopback address of its own (127.0.x.y), so per-address limits do not interfere."""
    n = next(_sources)
    return f"127.0.{n // 250 + 10}.{n % 250 + 1}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    set_cookies: list[str] = field(default_factory=list)  # every Set-Cookie header

    def json(self):
        return json.loads(self.body)


def _read_reply(sock: socket.socket, buf: bytearray, head_only: bool = False) -> Reply:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before headers: {bytes(buf)!r}")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
        if k.strip().lower() == "set-cookie":
            cookies.append(v.strip())
    length = 0 if head_only else int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    buf[:] = rest[length:]
    return Reply(status, headers, rest[:length], cookies)


def request_bytes(
    method: str,
    target: str | bytes,
    host: str | None,
    headers=(),
    body: bytes = b"",
    close: bool = False,
) -> bytes:
    t = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode() + b" " + t + b" HTTP/1.1"]
    if host is not None:
        lines.append(b"Host: " + host.encode("latin-1"))
    framed = False  # the caller set the body's framing itself (e.g. a lying length)
    for k, v in headers:
        lines.append(f"{k}: {v}".encode("latin-1"))
        framed |= k.lower() in ("content-length", "transfer-encoding")
    if not framed and (body or method in ("POST", "PUT")):
        lines.append(f"Content-Length: {len(body)}".encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def raw(
    port: int,
    data: bytes,
    *,
    source: str | None = None,
    timeout: float = 10.0,
    host_ip: str = "127.0.0.1",
    family=socket.AF_INET,
) -> Reply:
    """Send ``data`` verbatim on a new connection; read one response."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        s.connect((host_ip, port))
        s.sendall(data)
        return _read_reply(s, bytearray())


class Conn:
    """A keep-alive connection (stays on one gateway worker)."""

    def __init__(self, port: int, source: str | None = None, timeout: float = 10.0):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.buf = bytearray()

    def send(self, method, target, host, headers=(), body=b"") -> Reply:
        self.sock.sendall(request_bytes(method, target, host, headers, body))
        return _read_reply(self.sock, self.buf, head_only=method == "HEAD")

    def close(self):
        self.sock.close()


class Gateway:
    """The running gateway as the tests see it."""

    def __init__(self, port: int):
        self.port = port

    def host(self, slug: str) -> str:
        return f"{slug}.localhost:{self.port}"

    def call(
        self,
        method: str,
        target: str,
        slug: str | None,
        token: str | None = None,
        body=None,
        *,
        source: str | None = None,
        headers=(),
        host: str | None = None,
    ):
        hdrs = list(headers)
        if token:
            hdrs.append(("Authorization", f"Bearer {token}"))
        data = b""
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.append(("Content-Type", "application/json"))
        h = host if host is not None else (self.host(slug) if slug else None)
        return raw(
            self.port,
            request_bytes(method, target, h, hdrs, data, close=True),
            source=source or new_source(),
        )

    def scrape(self) -> Scrape:
        """The gateway's /metrics (every worker's counters summed by series)."""
        r = raw(self.port, request_bytes("GET", "/metrics", "localhost", close=True))
        assert r.status == 200, r
        return Scrape.parse(r.body.decode())

    def counter(self, name: str, **labels: str) -> float:
        """A counter's value summed over the series matching `labels`; AssertionError when
        none exists (so "unchanged" never compares two defaults)."""
        return self.scrape().value(f"{name}_total", **labels)


def access_stub(channels):
    return agrpc.AccessServiceStub(channels["identity"])


def make_token(channels, slug: str, *scopes: str, cidrs=(), expires_in: int = 0) -> tuple[str, str]:
    """(id, bearer) of a new token of ``slug``."""
    r = access_stub(channels).CreateToken(
        apb.CreateTokenRequest(
            name="e2e",
            scopes=list(scopes or ("api:read", "api:write", "admin")),
            cidrs=list(cidrs),
            expires_in_seconds=expires_in,
        ),
        metadata=md(slug),
        timeout=10,
    )
    return r.token.id, r.secret


@pytest.fixture(scope="session", name="gateway")
def gateway_fixture(system) -> Gateway:
    return Gateway(system.ports["gateway"])


@pytest.fixture(scope="session", name="tenant_a")
def tenant_a_fixture(channels) -> str:
    slug = unique("ga")
    create_tenant(channels, slug)
    return slug


@pytest.fixture(scope="session", name="tenant_b")
def tenant_b_fixture(channels) -> str:
    slug = unique("gb")
    create_tenant(channels, slug)
    return slug


# -- probes -----------------------------------------------------------------------------------


def test_healthz_and_readyz_answer_on_any_host(gateway):
    for host in ("localhost", "127.0.0.1", "nobody.localhost"):
        for path in ("/healthz", "/readyz"):
            r = raw(gateway.port, request_bytes("GET", path, host, close=True))
            assert r.status == 200, (host, path, r)
            assert r.headers["x-content-type-options"] == "nosniff"


def test_metrics_only_for_loopback_without_forwarding(gateway):
    ok = raw(gateway.port, request_bytes("GET", "/metrics", "localhost", close=True))
    assert ok.status == 200 and ok.headers["content-type"].startswith("text/plain")
    spoofed = raw(
        gateway.port,
        request_bytes(
            "GET", "/metrics", "localhost", [("X-Forwarded-For", "127.0.0.1")], close=True
        ),
    )
    assert spoofed.status == 404 and b"ontrack_gateway" not in spoofed.body
