"""Session-cookie authentication at the gateway: the interface operations declared ``SESSION``
are checked through, and reading the cookie.

Sessions themselves (sign-in, storage, expiry) arrive with a later issue; until a
``SessionAuthenticator`` is configured, every session operation answers 401. The gateway never
decides a session is valid on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ontrackio.gateway.client_ip import IPAddress
from ontrackio.gateway.problems import ProblemResponse, problem

SESSION_COOKIE = "ontrack_session"
SIGN_IN_DETAIL = "Sign in first."


@dataclass(frozen=True)
class SessionPrincipal:
    """A signed-in user of one tenant."""

    user_id: str
    tenant: str

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"


class SessionAuthenticator(Protocol):
    async def authenticate(
        self, session_id: str, tenant: str, client_ip: IPAddress | None
    ) -> SessionPrincipal | None:
        """The session's user if ``session_id`` is a live session of ``tenant``, else None."""
        ...


def session_cookie(cookie_headers: list[str]) -> str | None:
    """The session cookie's value; None if absent, empty, or sent more than once (ambiguous:
    a second cookie may have been planted by a sibling domain, so neither is believed)."""
    values = [
        value.strip()
        for header in cookie_headers
        for name, _, value in (part.strip().partition("=") for part in header.split(";"))
        if name == SESSION_COOKIE
    ]
    return values[0] if len(values) == 1 and values[0] else None


def sign_in_required() -> ProblemResponse:
    return problem(
        401,
        detail=SIGN_IN_DETAIL,
        headers={"WWW-Authenticate": f'Cookie realm="ontrack", cookie-name="{SESSION_COOKIE}"'},
    )
