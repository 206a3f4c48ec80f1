"""Every HTTP request gets an id of the gateway's own, answered as ``X-Request-Id`` on every
response (refusals by the edge included, so no response differs by having one) and sent to
the services with each call, so the audit entries a request causes name it.

A client's own ``X-Request-Id`` is not believed: it would let a caller write what it likes
into the audit trail.
"""

from __future__ import annotations

import uuid

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"


def request_id_of(connection: HTTPConnection) -> str:
    """The id RequestIdMiddleware gave this request (one is made if it ran outside it)."""
    state = connection.scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = uuid.uuid4().hex
    return rid


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)
