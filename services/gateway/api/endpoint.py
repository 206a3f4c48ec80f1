"""The endpoint wrapper: runs one declared operation for one request.

Order: admin allowlist (admin operations, on the route the router matched) → authentication
per declaration (bearer token and scopes, or session cookie; a session held at an MFA
stage only for operations declared ``during_mfa``) → per-principal rate limit →
path and query parameters → body per kind → handler → errors in the declared format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ontrackio.gateway.allowlist import GetAllowlist, admin_refusal
from ontrackio.gateway.api.bodies import read_body
from ontrackio.gateway.api.formats import render
from ontrackio.gateway.api.operation import AuthKind, BodyKind, Call, Operation, Principal
from ontrackio.gateway.auth import csrf
from ontrackio.gateway.auth.bearer import Failure, forbidden_scope, refusal
from ontrackio.gateway.auth.session import (
    SESSION_COOKIE,
    SessionPrincipal,
    mfa_redirect,
    mfa_required,
    session_cookie,
    sign_in_redirect,
    sign_in_required,
)
from ontrackio.gateway.client_ip import IPAddress
from ontrackio.gateway.limits import DEFAULT_MAX_JSON_DEPTH
from ontrackio.gateway.openapi import Invalid, validate
from ontrackio.gateway.problems import problem, problem_from_rpc_error, response_from_http_exception
from ontrackio.gateway.ratelimit import TokenBucketLimiter, too_many_requests
from ontrackio.gateway.refusals import RefusalReporter
from ontrackio.gateway.request_id import request_id_of
from ontrackio.gateway.text import UnsafeText, check_text

FULL_STAGE = "full"
_INTEGER = re.compile(r"-?[0-9]{1,10}\Z")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


class SessionAuthenticator(Protocol):
    async def authenticate(
        self, cookie: str, tenant: str, client_ip: IPAddress | None
    ) -> SessionPrincipal | None:
        """The session's user if ``cookie`` is a live session of ``tenant``, else None."""
        ...


class BearerAuthenticator(Protocol):
    async def authenticate(
        self, authorization: str | None, tenant: str, client_ip: IPAddress | None
    ) -> Any: ...  # a Principal with ``scopes`` and ``actor``, or an auth.Failure


@dataclass(frozen=True)
class Checks:
    """What the wrapper needs to admit a request; built once per worker (app.py).

    ``sessions`` None: no session authenticator configured, every session operation is 401.
    """

    tokens: BearerAuthenticator
    principal_limiter: TokenBucketLimiter
    get_allowlist: GetAllowlist
    sessions: SessionAuthenticator | None = None
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    refusals: RefusalReporter | None = None  # refused attempts become audit entries
    csrf_key: bytes = b""  # the key session CSRF tokens are derived under (token_hash_key)
    public_scheme: str = "https"  # the scheme browsers use (csrf origin check)

    def on_admin_denied(self, tenant: Any, client_ip: IPAddress | None, target: str) -> None:
        """An admin request refused by the allowlist (edge or endpoint) becomes an entry."""
        if self.refusals is not None:
            self.refusals.report(
                tenant.slug, "allowlist.denied", target=target, client_address=str(client_ip or "")
            )

    def report(self, request: Request, tenant: str, action: str, **details: Any) -> None:
        if self.refusals is not None:
            self.refusals.report(
                tenant,
                action,
                target=f"{request.method} {request.url.path}"[:200],
                client_address=str(getattr(request.state, "client_ip", None) or ""),
                request_id=request_id_of(request),
                **details,
            )


def parse_params(op: Operation, request: Request) -> dict[str, Any]:
    """Path and query parameters checked against their schemas; raise Invalid or UnsafeText.

    A query parameter may be given once; integers and booleans are parsed strictly.
    """
    params: dict[str, Any] = {}
    for p in op.params:
        if p.where == "path":
            value = check_text(request.path_params[p.name], p.name)
            params[p.name] = validate(value, p.schema, p.name)
            continue
        values = request.query_params.getlist(p.name)
        if not values:
            continue
        if len(values) > 1:
            raise Invalid(f"{p.name} may be given once")
        raw: Any = check_text(values[0], p.name)
        kind = p.schema.get("type")
        if kind == "integer":
            if not _INTEGER.match(raw):
                raise Invalid(f"{p.name} must be an integer")
            raw = int(raw)
        elif kind == "boolean":
            if raw.lower() not in _BOOLEANS:
                raise Invalid(f"{p.name} must be true or false")
            raw = _BOOLEANS[raw.lower()]
        params[p.name] = validate(raw, p.schema, p.name)
    return params


def has_session_cookie(header: str) -> bool:
    return SESSION_COOKIE in header


def _wants_session(op: Operation, request: Request) -> bool:
    """Which credential a request presents: an Authorization header means a token; else our
    session cookie, when the operation takes sessions; with neither, the token's 401."""
    if not op.auth.accepts_session:
        return False
    if not op.auth.accepts_token:
        return True
    if request.headers.getlist("authorization"):
        return False
    return any(has_session_cookie(h) for h in request.headers.getlist("cookie"))


async def _authenticate_session(
    op: Operation, checks: Checks, request: Request, tenant: str, client_ip: IPAddress | None
) -> Principal | Response:
    cookie = session_cookie(request.headers.getlist("cookie"))
    user = None
    if cookie is not None and checks.sessions is not None:
        user = await checks.sessions.authenticate(cookie, tenant, client_ip)
    if user is None:
        if op.response_media_type == "text/html" and request.method in csrf.SAFE_METHODS:
            return sign_in_redirect(request.url.path)  # a page: to sign-in and back
        return sign_in_required()
    if user.stage != FULL_STAGE and not op.auth.during_mfa:
        # Held by the MFA policy: a factor to present or set up before anything else.
        if op.response_media_type == "text/html" and request.method in csrf.SAFE_METHODS:
            return mfa_redirect(request.url.path)
        return mfa_required(user.stage)
    for scope in op.auth.scopes:
        if scope not in user.scopes:
            checks.report(request, tenant, "role.denied", actor=user.actor, reason=f"needs {scope}")
            return problem(403, detail=f"Your role does not allow this (it needs {scope!r}).")
    if request.method not in csrf.SAFE_METHODS:
        expected = csrf.expected_origin(checks.public_scheme, request.headers.get("host", ""))
        if not csrf.origin_ok(request.headers, expected):
            checks.report(request, tenant, "csrf.refused", actor=user.actor, reason="origin")
            return csrf.refused()
        presented = request.headers.getlist(csrf.HEADER)
        # A form may carry the token as a field instead (checked once the body is read).
        if op.body.kind is not BodyKind.FORM or presented:
            if len(presented) != 1 or not csrf.token_ok(
                checks.csrf_key, user.session_id, presented[0]
            ):
                checks.report(request, tenant, "csrf.refused", actor=user.actor, reason="token")
                return csrf.refused()
    principal: Principal = user
    return principal


async def _authenticate(
    op: Operation, checks: Checks, request: Request, tenant: str, client_ip: IPAddress | None
) -> Principal | Response | None:
    """The principal, None for public operations, or the refusal to answer."""
    if op.auth.kind is AuthKind.PUBLIC:
        return None
    if _wants_session(op, request):
        return await _authenticate_session(op, checks, request, tenant, client_ip)
    authorization = request.headers.getlist("authorization")
    result = (
        Failure.MALFORMED
        if len(authorization) > 1
        else await checks.tokens.authenticate(
            authorization[0] if authorization else None, tenant, client_ip
        )
    )
    if isinstance(result, Failure):
        if result is not Failure.THROTTLED:
            checks.report(request, tenant, "token.refused", reason=result.value)
        return refusal(result)
    for scope in op.auth.scopes:
        if scope not in result.scopes:
            checks.report(
                request, tenant, "scope.denied", actor=result.actor, reason=f"needs {scope}"
            )
            return forbidden_scope(scope)
    principal: Principal = result
    return principal


def _form_csrf_refused(
    op: Operation, checks: Checks, request: Request, principal: Any, body: Any
) -> bool:
    """A cookie-authenticated unsafe form request that sent no CSRF header must carry the
    token as a form field."""
    if (
        op.body.kind is not BodyKind.FORM
        or request.method in csrf.SAFE_METHODS
        or not isinstance(principal, SessionPrincipal)
        or request.headers.getlist(csrf.HEADER)
    ):
        return False
    presented = body.get(csrf.FORM_FIELD) if isinstance(body, dict) else None
    return not csrf.token_ok(checks.csrf_key, principal.session_id, presented)


async def _serve(op: Operation, checks: Checks, services: Any, request: Request) -> Response:
    tenant_info = getattr(request.state, "tenant", None)
    client_ip: IPAddress | None = getattr(request.state, "client_ip", None)
    if op.admin:
        denied = await admin_refusal(
            tenant_info,
            client_ip,
            checks.get_allowlist,
            on_denied=checks.on_admin_denied,
            target=f"{request.method} {request.url.path}"[:200],
        )
        if denied is not None:
            return denied
    if tenant_info is None:  # behind the edge every request has one; fail closed regardless
        return problem(404)
    tenant: str = tenant_info.slug
    principal = await _authenticate(op, checks, request, tenant, client_ip)
    if isinstance(principal, Response):
        return principal
    if principal is not None:
        decision = checks.principal_limiter.hit(principal.actor)
        if not decision.allowed:
            return too_many_requests(decision.retry_after)
    try:
        params = parse_params(op, request)
    except (Invalid, UnsafeText) as exc:
        return problem(400, detail=str(exc))
    body = await read_body(op.body, request, max_json_depth=checks.max_json_depth)
    if _form_csrf_refused(op, checks, request, principal, body):
        checks.report(request, tenant, "csrf.refused", actor=principal.actor, reason="token")
        return csrf.refused()
    call = Call(
        tenant,
        principal,
        client_ip,
        params,
        body,
        headers=request.headers,
        request_id=request_id_of(request),
    )
    result = await op.handler(call, services)
    if isinstance(result, Response):
        return result
    data, headers = result if isinstance(result, tuple) else (result, {})
    return JSONResponse(
        data, status_code=op.status, headers=headers, media_type=op.response_media_type
    )


def endpoint(op: Operation, checks: Checks, services: Any):
    """The Starlette endpoint for ``op``; ``services`` is handed to its handler as is."""

    async def run(request: Request) -> Response:
        try:
            response = await _serve(op, checks, services, request)
        except HTTPException as exc:  # body refusals, and 413 raised while streaming
            response = response_from_http_exception(exc)
        except grpc.aio.AioRpcError as exc:
            response = problem_from_rpc_error(exc)
        return render(op.errors, response)

    run.__name__ = op.operation_id
    return run
