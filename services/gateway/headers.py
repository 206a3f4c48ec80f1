"""Security response headers on every HTTP response; HSTS only on connections that are TLS."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # An API serves nothing that needs a source; harmless on JSON, decisive on any stray HTML.
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
DEFAULT_HSTS_MAX_AGE = 63_072_000  # two years, the preload list's expectation


class SecurityHeadersMiddleware:
    """Adds BASE_HEADERS (and HSTS for https) unless the response already set that header.

    HSTS is sent only when this server terminates TLS (``scope["scheme"] == "https"``): over
    plain HTTP browsers ignore it, and behind a TLS-terminating proxy the proxy owns that header.
    """

    def __init__(self, app: ASGIApp, *, hsts_max_age: int = DEFAULT_HSTS_MAX_AGE) -> None:
        self.app = app
        self.hsts = (
            b"strict-transport-security",
            f"max-age={hsts_max_age}; includeSubDomains".encode(),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = BASE_HEADERS + ((self.hsts,) if scope.get("scheme") == "https" else ())

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
