"""Request body size limit (413, at the edge) and the JSON parser with its limits (400).

The size limit applies to every request before routing; JSON is parsed per operation (the
operation's body kind decides whether and how, see api/bodies.py) with ``loads_limited``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ontrackio.gateway.problems import response_from_http_exception
from ontrackio.gateway.text import UnsafeText, check_tree

DEFAULT_MAX_JSON_DEPTH = 32

# Bounded "lingering close" for refused bodies (see BodyLimitMiddleware): at most this many bytes
# past the limit are read and thrown away, for at most this long, before the 413 is sent.
# 4 MiB covers the usual honest overshoot (a file a few MiB too big) and is what a ~17 Mbit/s
# uplink sends within the 2 s; beyond that the drain would rarely finish in time anyway. It is an
# absolute amount, not a multiple of the limit, so the bandwidth a refused request can make the
# gateway waste stays the same however large max_body_bytes is configured. Memory is no concern:
# each chunk is dropped as it arrives (uvicorn stops reading the socket past 64 KiB unread).
DRAIN_BYTES = 4 * 1024 * 1024
DRAIN_SECONDS = 2.0

# A JSON string, or an unterminated one running to the end. Possessive and always matching, so
# scanning is linear even for adversarial quote/backslash soup.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\[\s\S]?+)*+"?+')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKETS_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body passes the limit; an HTTPException, so a
    Starlette app that catches it still answers 413 with problem+json."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            detail=f"The request body is larger than {limit} bytes.",
            headers={"Connection": "close"},
        )


class InvalidContentLength(HTTPException):
    def __init__(self) -> None:
        super().__init__(400, detail="Invalid Content-Length.")


class InvalidJSON(HTTPException):
    def __init__(self, detail: str = "The request body is not valid JSON.") -> None:
        super().__init__(400, detail=detail)


class JSONTooDeep(InvalidJSON):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"The JSON body is nested deeper than {max_depth} levels.")


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """True when containers nest deeper than ``max_depth``; never recurses, runs in C-speed passes.

    Strings are cut out first (brackets inside them do not count); each pass then removes the
    innermost ``[]`` pairs, so a body that still has brackets after ``max_depth`` passes is too
    deep. Malformed input counts as too deep if the parser could descend too far before failing.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(_BRACKETS_AS_SQUARE, _NOT_BRACKETS)
    for done in range(max_depth + 1):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"")
        if shorter == brackets:
            # Malformed; the parser would still descend into every opener left before failing.
            return done + brackets.count(b"[") > max_depth
        brackets = shorter
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 would become inf, which no JSON can carry back
        raise ValueError("number out of range")
    return value


def loads_limited(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Parse strict JSON; raise JSONTooDeep or InvalidJSON (both HTTP 400).

    Accepts exactly the UTF-8 texts ``json.loads`` accepts, minus NaN/Infinity (also as an
    overflowing number such as ``1e999``), minus values
    nested deeper than ``max_depth`` containers, minus any string (object keys included)
    holding NUL or a lone surrogate (text.py); the message then says where.
    """
    if json_depth_exceeds(body, max_depth):
        raise JSONTooDeep(max_depth)
    try:
        value = json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidJSON() from exc
    try:
        return check_tree(value)
    except UnsafeText as exc:
        raise InvalidJSON(f"The JSON body is refused: {exc}.") from exc


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length, None if absent.

    Raises InvalidContentLength if malformed or given twice differently.
    """
    values = {value.strip() for name, value in headers if name.lower() == b"content-length"}
    if not values:
        return None
    value = values.pop()
    if values or not value.isdigit() or len(value) > 18:
        raise InvalidContentLength()
    return int(value)


class BodyLimitMiddleware:
    """413 when Content-Length or the streamed body passes ``max_bytes``.

    The streamed body is counted too (chunked, or lying about length).

    Before answering, the rest of the body is read and discarded, up to ``drain_bytes`` past the
    limit and for at most ``drain_seconds`` (a bounded form of nginx's lingering close). Why:
    the 413 closes the connection, and closing a socket that still has unread request bytes, or
    that receives more afterwards, makes the kernel send a RST. A client still uploading then
    gets "connection reset" on its send, and the RST may discard the 413 before it is read.
    Bodies that cannot be drained within the budget (declared larger, or still streaming when
    the budget or the time runs out) are refused straight away, as before.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        drain_bytes: int = DRAIN_BYTES,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_budget = max_bytes + drain_bytes  # total body bytes the drain may reach
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = declared_length(scope["headers"])
        except InvalidContentLength as exc:
            await response_from_http_exception(exc)(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            # A client waiting for "100 Continue" has not sent the body and, given the final
            # status instead, will not: nothing to drain, and calling receive() would make
            # uvicorn send the 100 and invite the upload.
            if declared <= self.drain_budget and not _expects_continue(scope["headers"]):
                await self._drain(receive, received=0)
            await response_from_http_exception(BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Drained here rather than where BodyTooLarge is caught, so the body is
                    # also drained when the app itself turns the exception into the 413.
                    if message.get("more_body", False):
                        await self._drain(receive, received)
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await response_from_http_exception(exc)(scope, receive, send)

    async def _drain(self, receive: Receive, received: int) -> None:
        """Read and discard the body until its end, the drain budget or the time bound.

        ``received`` is what was already read. Before the response starts, uvicorn's receive()
        hands over the body as it arrives (``more_body`` false on the last chunk), and
        ``http.disconnect`` once the client is gone; it is safe to cancel at the time bound.
        """
        try:
            async with asyncio.timeout(self.drain_seconds):
                while received <= self.drain_budget:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # client went away
                    received += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return  # all read: closing now sends a FIN, not a RST
        except TimeoutError:
            pass  # a slow or stalled client gets the 413 anyway (and perhaps a RST)


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"expect" and value.strip().lower() == b"100-continue"
        for name, value in headers
    )
