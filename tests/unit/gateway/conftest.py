"""Raw-ASGI driver for gateway tests.

Exact raw paths and headers, no sockets, no HTTP client rewriting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.types import ASGIApp, Message


@dataclass
class Result:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode("latin-1")
        return None

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_problem(self) -> bool:
        return (self.content_type or "").startswith("application/problem+json") and (
            self.json()["status"] == self.status
        )


def call(
    app: ASGIApp,
    path: str | bytes = "/",
    *,
    method: str = "GET",
    host: str | None = "acme.localhost",
    headers: Sequence[tuple[str, str]] = (),
    client: tuple[str, int] | None = ("203.0.113.7", 50000),
    scheme: str = "http",
    body: Sequence[bytes] = (b"",),
    query: str = "",
    decoded_path: str | None = None,
) -> Result:
    """Send one request.

    ``path`` is the raw path (bytes or ASCII str), ``body`` the chunks as streamed, ``query``
    the raw query string; ``decoded_path`` overrides the server-decoded ``scope["path"]``.
    """
    raw_path = path if isinstance(path, bytes) else path.encode("latin-1")
    from urllib.parse import unquote

    all_headers = ([(b"host", host.encode("latin-1"))] if host is not None else []) + [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": unquote(raw_path.decode("latin-1")) if decoded_path is None else decoded_path,
        "raw_path": raw_path,
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": all_headers,
        "client": client,
        "server": ("127.0.0.1", 8080),
    }
    chunks = list(body)
    messages: list[Message] = []

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Result(start["status"], list(start.get("headers", [])), content)


@pytest.fixture
def asgi() -> Callable[..., Result]:
    return call
