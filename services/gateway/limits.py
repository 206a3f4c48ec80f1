"""Request body size limit (413) and JSON nesting-depth limit (400).

Both are enforced before any route parses.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ontrackio.gateway.problems import response_from_http_exception

DEFAULT_MAX_JSON_DEPTH = 32

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


def loads_limited(body: bytes, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Parse strict JSON (no NaN/Infinity); raise JSONTooDeep or InvalidJSON (both HTTP 400)."""
    if json_depth_exceeds(body, max_depth):
        raise JSONTooDeep(max_depth)
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise InvalidJSON() from exc


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
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

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


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return False


class JSONLimitMiddleware:
    """For JSON request bodies: 400 when invalid or too deep.

    The parsed value lands in ``state["json"]``.

    The body is buffered (the body limit sits outside this layer, so buffering is bounded) and
    replayed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope["headers"]):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)  # client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                scope.setdefault("state", {})["json"] = loads_limited(body, self.max_depth)
            except InvalidJSON as exc:
                await response_from_http_exception(exc)(scope, receive, send)
                return
        await self.app(
            scope,
            _replay({"type": "http.request", "body": body, "more_body": False}, receive),
            send,
        )


def _replay(first: Message, receive: Receive) -> Receive:
    pending = [first]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
