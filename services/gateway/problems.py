"""RFC 9457 problem+json responses.

Also the gRPC-to-HTTP status table and the guards that keep every error a problem.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_DETAIL_CHARS = 500

logger = logging.getLogger(__name__)

_S = grpc.StatusCode
# One table, read by every gRPC call site. Upstream failures are 502 (the gateway is fine, the
# service behind it is not); the gateway's own bugs are 500 (see guard below).
GRPC_TO_HTTP: Mapping[grpc.StatusCode, int] = MappingProxyType(
    {
        _S.INVALID_ARGUMENT: 400,
        _S.OUT_OF_RANGE: 400,
        _S.UNAUTHENTICATED: 401,
        _S.PERMISSION_DENIED: 403,
        _S.NOT_FOUND: 404,
        _S.ALREADY_EXISTS: 409,
        _S.ABORTED: 409,
        # 409, not 412: 412 promises the client sent a conditional header, which gRPC cannot know.
        _S.FAILED_PRECONDITION: 409,
        _S.RESOURCE_EXHAUSTED: 429,
        _S.UNAVAILABLE: 503,
        _S.DEADLINE_EXCEEDED: 504,
        _S.CANCELLED: 502,
        _S.UNKNOWN: 502,
        _S.INTERNAL: 502,
        _S.DATA_LOSS: 502,
        _S.UNIMPLEMENTED: 502,
        _S.OK: 502,  # an error carrying OK is itself an upstream bug
    }
)
UPSTREAM_FALLBACK_STATUS = 502

# Only these codes carry text written for the user (the services' errors.py promise this).
# Authentication and authorisation failures stay vague on purpose.
_USER_FACING_CODES = frozenset(
    {
        _S.INVALID_ARGUMENT,
        _S.OUT_OF_RANGE,
        _S.NOT_FOUND,
        _S.ALREADY_EXISTS,
        _S.ABORTED,
        _S.FAILED_PRECONDITION,
    }
)


# The services' precise reasons (trailing metadata ontrack-reason, core/errors.py) that get
# a problem type and status of their own instead of their gRPC code's. A type is a stable
# URI clients may switch on; it is documented in docs/keys.md.
PROBLEM_TYPE_BASE = "https://problems.ontrack.io/"
REASON_METADATA = "ontrack-reason"


@dataclass(frozen=True)
class Reason:
    status: int
    type_: str
    title: str
    retry_after: str | None = None  # seconds, for a Retry-After header


REASONS: Mapping[str, Reason] = MappingProxyType(
    {
        # The tenant's key is disabled, deleted or its grant revoked (or the KMS is
        # unreachable): the tenant's encrypted fields fail closed until it is usable again.
        "tenant-key-unavailable": Reason(
            503,
            PROBLEM_TYPE_BASE + "tenant-key-unavailable",
            "Tenant key unavailable",
            retry_after="30",  # a retry soon is pointless but harmless; clients back off
        ),
        # Domain verification (docs/domains.md): the challenge's TXT record is not published,
        # or holds another value; the resolvers gave no answer (a retry may succeed).
        "domain-challenge-missing": Reason(
            422, PROBLEM_TYPE_BASE + "domain-challenge-missing", "DNS challenge not found"
        ),
        "domain-challenge-mismatch": Reason(
            422, PROBLEM_TYPE_BASE + "domain-challenge-mismatch", "DNS challenge does not match"
        ),
        "domain-dns-unavailable": Reason(
            503,
            PROBLEM_TYPE_BASE + "domain-dns-unavailable",
            "DNS unavailable",
            retry_after="10",
        ),
    }
)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    *,
    detail: str | None = None,
    title: str | None = None,
    type_: str = "about:blank",
    instance: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem object; with type about:blank the title is the status phrase (RFC 9457 4.2.1)."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title or status_phrase(status),
        "status": status,
    }
    if detail:
        body["detail"] = detail[:MAX_DETAIL_CHARS]
    if instance:
        body["instance"] = instance
    if extensions:
        body.update({k: v for k, v in extensions.items() if k not in body})
    return body


def problem(
    status: int,
    *,
    detail: str | None = None,
    title: str | None = None,
    type_: str = "about:blank",
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> ProblemResponse:
    """An `application/problem+json` response; usable as a route result or as a raw ASGI app."""
    body = problem_body(
        status, detail=detail, title=title, type_=type_, instance=instance, extensions=extensions
    )
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def http_status_for_grpc(code: grpc.StatusCode | None) -> int:
    return GRPC_TO_HTTP.get(code, UPSTREAM_FALLBACK_STATUS) if code else UPSTREAM_FALLBACK_STATUS


def problem_from_grpc(
    code: grpc.StatusCode | None, details: str | None = None, *, instance: str | None = None
) -> ProblemResponse:
    """Map a gRPC status to a problem; `details` is shown only for user-facing codes."""
    shown = details if code in _USER_FACING_CODES else None
    return problem(http_status_for_grpc(code), detail=shown, instance=instance)


def reason_of(exc: grpc.RpcError) -> Reason | None:
    """The precise reason a service gave with its status, if the gateway knows it."""
    trailing = getattr(exc, "trailing_metadata", None)
    try:
        pairs = trailing() if callable(trailing) else ()
    except Exception:  # noqa: BLE001 - an error without metadata has no reason
        return None
    for key, value in pairs or ():
        if key == REASON_METADATA and isinstance(value, str):
            return REASONS.get(value)
    return None


def problem_from_rpc_error(exc: grpc.RpcError, *, instance: str | None = None) -> ProblemResponse:
    """Works for grpc.aio.AioRpcError and sync grpc.Call errors; anything else maps to 502.
    A reason the service named (REASONS) gives the problem its own type and status."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    reason = reason_of(exc)
    if reason is not None and code == grpc.StatusCode.FAILED_PRECONDITION:
        return problem(
            reason.status,
            detail=details,
            title=reason.title,
            type_=reason.type_,
            instance=instance,
            headers={"Retry-After": reason.retry_after} if reason.retry_after else None,
        )
    return problem_from_grpc(
        code if isinstance(code, grpc.StatusCode) else None, details, instance=instance
    )


def response_from_http_exception(exc: HTTPException) -> Response:
    """Problem for an HTTPException; 5xx details are never shown."""
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    # Starlette fills detail with the phrase when none was given; repeating the title adds nothing.
    detail = (
        exc.detail
        if exc.status_code < 500 and exc.detail != status_phrase(exc.status_code)
        else None
    )
    return problem(exc.status_code, detail=detail, headers=exc.headers)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return response_from_http_exception(exc)


async def _handle_rpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.RpcError)
    return problem_from_rpc_error(exc)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    return problem(500)


def install_problem_handlers(app: Starlette) -> None:
    """Render HTTPException, grpc.RpcError and any other exception as problem+json on `app`."""
    app.add_exception_handler(HTTPException, _handle_http_exception)
    app.add_exception_handler(grpc.RpcError, _handle_rpc_error)
    app.add_exception_handler(Exception, _handle_unexpected)


# Error bodies the guard leaves alone: problems, SCIM's own error messages (RFC 7644 3.12),
# which SCIM operations must answer in (api/formats.py), and the sign-in pages' own HTML
# error pages (gateway/pages: rendered from templates, never an exception's text).
KEPT_ERROR_MEDIA_TYPES = frozenset(
    {PROBLEM_MEDIA_TYPE.encode(), b"application/scim+json", b"text/html"}
)


def _is_kept_error(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.split(b";")[0].strip().lower() in KEPT_ERROR_MEDIA_TYPES
    return False


_DROPPED_ON_REWRITE = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"transfer-encoding"}
)


class ProblemGuardMiddleware:
    """Outermost edge layer: exceptions and non-problem error bodies become problem+json.

    Catches what escapes everything else (a bug in a middleware is a 500, an unhandled gRPC error
    is mapped through GRPC_TO_HTTP) and rewrites any >=400 response whose body is neither a
    problem nor a SCIM error (``KEPT_ERROR_MEDIA_TYPES``), keeping its other headers (Allow,
    Retry-After, WWW-Authenticate). If the response had already started, the exception is
    re-raised for the server to log and close the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        rewriting: dict[str, Any] | None = None

        async def guarded_send(message: Message) -> None:
            nonlocal started, rewriting
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                if status >= 400 and not _is_kept_error(message.get("headers", [])):
                    kept = [
                        (k, v)
                        for k, v in message.get("headers", [])
                        if k.lower() not in _DROPPED_ON_REWRITE
                    ]
                    body = json.dumps(problem_body(status), separators=(",", ":")).encode()
                    rewriting = {"body": body}
                    kept += [
                        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    await send({**message, "headers": kept})
                    return
            elif message["type"] == "http.response.body" and rewriting is not None:
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": rewriting["body"]})
                return
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, HTTPException):
                response: Response = response_from_http_exception(exc)
            elif isinstance(exc, grpc.RpcError):
                logger.warning("unhandled gRPC error at the edge: %r", exc)
                response = problem_from_rpc_error(exc)
            else:
                logger.exception("unhandled error at the edge")
                response = problem(500)
            await response(scope, receive, send)
