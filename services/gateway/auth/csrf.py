"""CSRF defence for requests authenticated by the session cookie (RFC 6454 origins).

An unsafe method (anything but GET, HEAD, OPTIONS) sent with the cookie must pass both:
1. its ``Origin`` (or, when a browser sends none, its ``Referer``'s origin) is the origin the
   request was sent to: the scheme of the tenant's canonical origin and the request's own
   host (the tenant's host or a verified custom domain). Neither header, or ``Origin: null``
   (an opaque origin), → refused.
2. it carries the session's CSRF token (``X-CSRF-Token`` header, or the ``csrf_token`` field
   of a form), which identity derives from the session id (sessions/rules.csrf_token) and
   hands out with the session (GET /api/v1/session, the pages' forms).
SameSite=Lax already keeps the cookie off most cross-site POSTs; these hold where it does
not (same-site sibling hosts, older browsers). Requests with an API token need neither.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ontrackio.gateway.problems import ProblemResponse, problem
from ontrackio.identity.sessions import rules

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEADER = "x-csrf-token"
FORM_FIELD = "csrf_token"
DETAIL = "This request needs the session's CSRF token and must come from this site."


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL (lower case), else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{suffix}"


def expected_origin(scheme: str, host: str) -> str | None:
    """The origin of a request to ``host`` (the Host header, port included) over ``scheme``."""
    return origin_of(f"{scheme}://{host}")


def origin_ok(headers, expected: str | None) -> bool:
    origins = headers.getlist("origin")
    if len(origins) > 1:
        return False
    presented = origins[0] if origins else None
    if presented is not None and presented.strip().lower() == "null":
        return False  # an opaque origin (sandboxed frame, privacy redirect): never this site
    if presented is None:
        referers = headers.getlist("referer")
        if len(referers) != 1:
            return False
        presented = referers[0]
    return expected is not None and origin_of(presented) == expected


def token_ok(key: bytes, session_id: str, presented: str | None) -> bool:
    return bool(presented) and rules.csrf_matches(key, session_id, presented or "")


def refused() -> ProblemResponse:
    return problem(403, detail=DETAIL)
