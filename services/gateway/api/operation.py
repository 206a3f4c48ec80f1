"""What one gateway operation declares, and the ``Call`` its handler receives.

An ``Operation`` names its method and path, how the caller authenticates (``PUBLIC``,
``SESSION`` cookie, ``bearer(*scopes)``), what body it takes (``NO_BODY``, ``json_body``,
``form_body``, ``scim_body``, ``upload``), how its errors are written (``ErrorFormat``) and
whether it is an admin operation (the admin IP allowlist applies to it after routing). The
endpoint wrapper (endpoint.py), the Starlette routes (router.py) and the OpenAPI document
(openapi.py) are all derived from these declarations; nothing else decides these questions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from ontrackio.gateway.client_ip import IPAddress

ADMIN_PREFIX = "/admin"
# Bounds for bodies whose operation does not name its own (the edge's MAX_BODY_BYTES still
# applies on top of every one of them).
FORM_MAX_BYTES = 64 * 1024
FORM_MAX_FIELDS = 64
DEFAULT_ERRORS = (400, 401, 403, 404, 429, 502, 503, 504)


class AuthKind(Enum):
    PUBLIC = "public"
    SESSION = "session"  # the session cookie only (a signed-in person: who am I, sign out)
    BEARER = "bearer"  # an API token only, holding every one of ``scopes`` (SCIM clients)
    CREDENTIAL = "credential"  # an API token with ``scopes``, or a session whose roles grant them


@dataclass(frozen=True)
class Auth:
    """``scopes`` must all be held: by the token, or by the signed-in user's roles
    (identity/roles/rules.py ROLE_SCOPES). Cookie-authenticated unsafe methods also pass the
    CSRF check (auth/csrf.py).

    ``during_mfa``: a session the MFA policy holds at ``step_up`` or ``enrol``
    (identity/mfa/policy.py) may call it too (presenting or setting up a factor, who am I,
    signing out); every other operation refuses such a session (403 ``mfa-required``)."""

    kind: AuthKind
    scopes: tuple[str, ...] = ()
    during_mfa: bool = False

    @property
    def accepts_session(self) -> bool:
        return self.kind in (AuthKind.SESSION, AuthKind.CREDENTIAL)

    @property
    def accepts_token(self) -> bool:
        return self.kind in (AuthKind.BEARER, AuthKind.CREDENTIAL)


PUBLIC = Auth(AuthKind.PUBLIC)
SESSION = Auth(AuthKind.SESSION)
SESSION_DURING_MFA = Auth(AuthKind.SESSION, during_mfa=True)


def bearer(*scopes: str) -> Auth:
    """API-token authentication only; the token must hold every scope named (at least one)."""
    if not scopes:
        raise ValueError("a bearer operation names the scopes it requires")
    return Auth(AuthKind.BEARER, tuple(scopes))


def credential(*scopes: str) -> Auth:
    """An API token holding every scope named, or a signed-in user whose roles grant them."""
    if not scopes:
        raise ValueError("an operation names the scopes it requires")
    return Auth(AuthKind.CREDENTIAL, tuple(scopes))


class BodyKind(Enum):
    NONE = "none"
    JSON = "json"
    FORM = "form"
    SCIM_JSON = "scim+json"
    UPLOAD = "upload"  # streamed to the handler as an async iterator of bytes


@dataclass(frozen=True)
class Body:
    """A request body: its kind, accepted media types, schema and limits.

    ``max_bytes`` None means only the edge's limit applies; ``max_fields`` bounds form fields.
    """

    kind: BodyKind
    media_types: tuple[str, ...] = ()
    schema: dict[str, Any] | None = None
    max_bytes: int | None = None
    max_fields: int = 0
    optional: bool = False  # no body and no Content-Type: the handler gets {}


NO_BODY = Body(BodyKind.NONE)


def json_body(schema: dict[str, Any], *, max_bytes: int | None = None) -> Body:
    return Body(BodyKind.JSON, ("application/json",), schema, max_bytes)


def scim_body(schema: dict[str, Any], *, max_bytes: int | None = None) -> Body:
    # RFC 7644 3.1: clients send application/scim+json; application/json is accepted too.
    return Body(
        BodyKind.SCIM_JSON, ("application/scim+json", "application/json"), schema, max_bytes
    )


def form_body(
    schema: dict[str, Any],
    *,
    max_bytes: int = FORM_MAX_BYTES,
    max_fields: int = FORM_MAX_FIELDS,
    optional: bool = False,
) -> Body:
    """``application/x-www-form-urlencoded``; ``schema`` describes an object of string fields.
    ``optional``: a request may also send no body at all (and no Content-Type)."""
    return Body(
        BodyKind.FORM,
        ("application/x-www-form-urlencoded",),
        schema,
        max_bytes,
        max_fields,
        optional,
    )


def upload(*media_types: str, max_bytes: int) -> Body:
    """A streamed upload (e.g. ``text/csv``, ``application/x-ndjson``), never buffered whole."""
    if not media_types:
        raise ValueError("an upload names the media types it accepts")
    return Body(BodyKind.UPLOAD, media_types, None, max_bytes)


class ErrorFormat(Enum):
    PROBLEM = "application/problem+json"  # RFC 9457
    SCIM = "application/scim+json"  # RFC 7644 3.12 error messages


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


class Principal(Protocol):
    """Who is calling: an API token or a signed-in user; ``actor`` goes to the services."""

    @property
    def actor(self) -> str: ...


@dataclass(frozen=True)
class Call:
    """One authenticated, validated request as a handler sees it.

    ``params`` holds the path and query parameters checked against their schemas; ``body`` the
    validated JSON value, the form as ``{name: value}``, an async iterator of bytes for an
    upload (the size limit enforced as it streams), or None. ``headers``: the request's
    headers (content negotiation; lower-case names). ``request_id``: this request's id (also
    the response's ``X-Request-Id``), passed to the services for the audit trail.
    """

    tenant: str
    principal: Principal | None
    client_ip: IPAddress | None
    params: dict[str, Any]
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""

    @property
    def actor(self) -> str | None:
        return self.principal.actor if self.principal is not None else None

    def stream(self) -> AsyncIterator[bytes]:
        """The upload's bytes, chunk by chunk (upload operations only)."""
        if not hasattr(self.body, "__aiter__"):
            raise TypeError("this operation takes no upload")
        stream: AsyncIterator[bytes] = self.body
        return stream


# A handler gets the call and the Gateway's services (whatever object the app was built with).
Handler = Callable[[Call, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One method on one path. Results: a JSON-able value, ``(value, headers)`` or a Response.

    Every path under ``/admin`` must be declared admin; admin operations cannot be public.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    auth: Auth
    response: dict[str, Any]
    status: int = 200
    body: Body = NO_BODY
    params: tuple[Param, ...] = ()
    errors: ErrorFormat = ErrorFormat.PROBLEM
    admin: bool = False
    error_codes: tuple[int, ...] = DEFAULT_ERRORS
    tags: tuple[str, ...] = field(default=())
    response_media_type: str = "application/json"
    # OpenAPI links of the success response: name -> (operationId, {parameter: expression}),
    # e.g. {"GetAsset": ("getAsset", {"id": "$response.body#/id"})}; stateful clients and
    # schemathesis follow them.
    links: Mapping[str, tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    # Other media types the success response may have (documented as text), e.g. text/csv.
    also_answers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        under_admin = self.path == ADMIN_PREFIX or self.path.startswith(ADMIN_PREFIX + "/")
        if under_admin and not self.admin:
            raise ValueError(f"{self.operation_id}: paths under /admin are admin operations")
        if self.admin and self.auth.kind is AuthKind.PUBLIC:
            raise ValueError(f"{self.operation_id}: an admin operation cannot be public")
