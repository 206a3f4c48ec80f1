"""``/.well-known/security.txt`` (RFC 9116).

Rendered once from configuration and served on every host.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.gateway.problems import problem

SECURITY_TXT_PATH = "/.well-known/security.txt"
CONTACT_SCHEMES = ("mailto:", "https://", "tel:")


def render_security_txt(
    *,
    contact: Sequence[str],
    expires: datetime,
    policy: str | None = None,
    preferred_languages: Sequence[str] = (),
    canonical: str | None = None,
) -> str:
    """The file body.

    Raises ValueError when a required field is missing or a URI scheme is unsafe.
    """
    if not contact:
        raise ValueError("security.txt needs at least one Contact")
    bad = [c for c in contact if not c.startswith(CONTACT_SCHEMES)]
    if bad:
        raise ValueError(f"Contact must be mailto:, https:// or tel: URIs, got {bad!r}")
    for name, uri in (("Policy", policy), ("Canonical", canonical)):
        if uri is not None and not uri.startswith("https://"):
            raise ValueError(f"{name} must be an https:// URI, got {uri!r}")
    if expires.tzinfo is None:
        raise ValueError("Expires needs a timezone")
    lines = [f"Contact: {c}" for c in contact]
    lines.append(f"Expires: {expires.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    if policy:
        lines.append(f"Policy: {policy}")
    if preferred_languages:
        lines.append(f"Preferred-Languages: {', '.join(preferred_languages)}")
    if canonical:
        lines.append(f"Canonical: {canonical}")
    return "\n".join(lines) + "\n"


class SecurityTxtMiddleware:
    """Answers GET/HEAD on SECURITY_TXT_PATH before tenant routing.

    It is the same for every host.
    """

    def __init__(self, app: ASGIApp, *, text: str) -> None:
        self.app = app
        self.response = PlainTextResponse(text, headers={"Cache-Control": "max-age=86400"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == SECURITY_TXT_PATH:
            if scope["method"] in ("GET", "HEAD"):
                await self.response(scope, receive, send)
            else:
                await problem(405, headers={"Allow": "GET, HEAD"})(scope, receive, send)
            return
        await self.app(scope, receive, send)
