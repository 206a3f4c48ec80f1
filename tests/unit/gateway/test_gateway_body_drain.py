"""The body limit's bounded drain: a refused upload is read and discarded (within a budget and a
time bound) before the 413, so the client reads the 413 instead of "connection reset".

The race only exists on a real TCP connection, so most tests drive the middleware through a
real uvicorn server (h11, as the gateway runs it: server.py) on loopback with raw sockets.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from ontrackio.gateway.limits import DRAIN_BYTES, BodyLimitMiddleware
from ontrackio.gateway.problems import ProblemGuardMiddleware, install_problem_handlers
from tests.helpers import eventually

LIMIT = 1_048_576  # the gateway's default max_body_bytes
BIG = 2_000_000  # over the limit, well inside the drain budget
ROUNDS = 10  # the old race (RST while the client still sends) showed in every round


def make_app(reached: list[int], **limits: Any):
    async def echo(request: Request):
        reached.append(1)
        body = await request.body()
        return JSONResponse({"len": len(body)})

    app = Starlette(routes=[Route("/", echo, methods=["POST"])])
    install_problem_handlers(app)
    return ProblemGuardMiddleware(BodyLimitMiddleware(app, max_bytes=LIMIT, **limits))


@contextmanager
def serving(app) -> Iterator[int]:
    """Run ``app`` under uvicorn/h11 in a thread; yield its loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http="h11", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started or not thread.is_alive(), timeout=10, interval=0.01)
        assert server.started, "uvicorn exited before it started serving"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def server() -> Iterator[Callable[..., tuple[int, list[int]]]]:
    """``server(**limits)`` -> (port, reached): a fresh server; ``reached`` counts route calls."""
    with ExitStack() as stack:

        def start(**limits: Any) -> tuple[int, list[int]]:
            reached: list[int] = []
            return stack.enter_context(serving(make_app(reached, **limits))), reached

        yield start


def head(headers: list[tuple[str, str]], content_type: str = "application/json") -> bytes:
    lines = ["POST / HTTP/1.1", "Host: localhost", f"Content-Type: {content_type}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = (body[i : i + size] for i in range(0, len(body), size))
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def read_reply(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """(status line, headers, body) of one response with a Content-Length."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before headers: {buf!r}")
        buf += chunk
    top, _, rest = buf.partition(b"\r\n\r\n")
    status, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    while len(rest) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status.encode(), headers, rest


def send_and_read(port: int, data: bytes):
    """Send everything, read the reply, and check the connection then ends with a FIN."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # A small send buffer keeps the client sending while the server decides, as over a real
        # network; on loopback the kernel would otherwise take the whole body at once and mostly
        # hide the race.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.sendall(data)  # ConnectionResetError here was the bug
        status, headers, body = read_reply(sock)
        assert sock.recv(65536) == b"", "connection should close cleanly after the 413"
    return status, headers, body


def assert_problem_413(status: bytes, headers: dict[str, str], body: bytes) -> None:
    assert status.split()[1] == b"413", (status, body)
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert b"larger than 1048576 bytes" in body


# -- over a real connection ---------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_declared_oversized_upload_is_read_then_answered_413(server, content_type):
    port, reached = server()
    body = b"x" * BIG
    request = head([("Content-Length", str(len(body)))], content_type) + body
    for _ in range(ROUNDS):
        assert_problem_413(*send_and_read(port, request))
    assert reached == []


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_a_streamed_upload_passing_the_limit_is_read_then_answered_413(server, content_type):
    # Refused while the route reads the body (the app turns BodyTooLarge into the 413), so the
    # drain must happen there, whatever the media type.
    port, reached = server()
    request = head([("Transfer-Encoding", "chunked")], content_type) + chunked(b"[" * BIG)
    for _ in range(ROUNDS):
        assert_problem_413(*send_and_read(port, request))
    assert len(reached) == ROUNDS


# "At once" below: the server's drain time bound is an hour and the client gives up reading
# after REPLY_SECONDS, so a reply that comes at all came without a drain (no wall-clock bound
# on the reply itself, which would measure the machine's load).
NEVER = 3600.0
REPLY_SECONDS = 10


def test_a_declared_length_beyond_the_drain_budget_is_answered_at_once(server):
    port, reached = server(drain_seconds=NEVER)
    request = head([("Content-Length", str(LIMIT + DRAIN_BYTES + 1))])
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_SECONDS) as sock:
        sock.sendall(request)  # and no body: draining would wait for the time bound
        status, headers, body = read_reply(sock)
    assert_problem_413(status, headers, body)
    assert reached == []


def test_a_stalled_upload_is_answered_after_the_time_bound(server):
    """Not before the bound (the drain waited for more), and at all (the bound ended it:
    the client never sends the rest and stops reading after REPLY_SECONDS)."""
    port, _ = server(drain_seconds=0.5)
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_SECONDS) as sock:
        started = time.monotonic()
        sock.sendall(head([("Content-Length", str(BIG))]) + b"x" * 100_000)  # then nothing
        reply = read_reply(sock)
        elapsed = time.monotonic() - started
    assert_problem_413(*reply)
    assert elapsed >= 0.5


def test_a_client_expecting_100_continue_is_refused_without_the_invitation(server):
    port, _ = server(drain_seconds=NEVER)
    request = head([("Content-Length", str(BIG)), ("Expect", "100-continue")])
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_SECONDS) as sock:
        sock.sendall(request)  # and no body until invited: a drain would wait for ever
        status, headers, body = read_reply(sock)
    assert status.startswith(b"HTTP/1.1 413"), status  # no "100 Continue" first
    assert_problem_413(status, headers, body)


# -- at the ASGI level --------------------------------------------------------------------------


def run_middleware(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], *, stalls: bool = False, **limits: Any
):
    """(status sent, number of receive() calls, chunks left unread) for one request.

    With ``stalls`` the client stops after ``chunks`` without ending the body.
    """
    pending = list(chunks)
    calls = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or stalls}
        await asyncio.sleep(3600)  # a client that stopped sending
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("the app must not see an oversized body")

    middleware = BodyLimitMiddleware(app, max_bytes=100, **limits)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    # A middleware that waited on a stalled client for ever fails here, not at pytest-timeout.
    asyncio.run(asyncio.wait_for(middleware(scope, receive, send), REPLY_SECONDS))
    return sent[0]["status"], calls, len(pending)


def test_drain_reads_the_whole_declared_body_within_budget():
    status, calls, left = run_middleware([(b"content-length", b"250")], [b"x" * 50] * 5)
    assert (status, calls, left) == (413, 5, 0)


def test_drain_is_skipped_beyond_the_budget():
    headers = [(b"content-length", b"251")]
    status, calls, left = run_middleware(headers, [b"x" * 50] * 6, drain_bytes=150)
    assert (status, calls, left) == (413, 0, 6)


def test_drain_of_a_stream_stops_at_the_budget():
    status, calls, left = run_middleware([], [b"x" * 60] * 10, drain_bytes=100)
    # 60, 120 (over the limit), 180, 240 (over limit + budget): then the 413
    assert (status, calls, left) == (413, 4, 6)


def test_drain_stops_at_the_time_bound():
    """The client stalls for an hour; the 0.1 s bound answers (run_middleware gives up
    after REPLY_SECONDS)."""
    status, calls, _ = run_middleware(
        [(b"content-length", b"150")], [b"x" * 50], stalls=True, drain_seconds=0.1
    )
    assert (status, calls) == (413, 2)
