"""OIDC sign-in at the edge (identity's OidcService): the browser's two URLs per provider and
the admin configuration.

The gateway never talks to the IdP and checks nothing of the protocol: it forwards the
callback's raw query values, the browser-binding cookie, the tenant's canonical origin
(``GatewaySettings.canonical_origin``: never the request's Host or forwarded headers), the
client address and user agent. ``/login`` sets the binding cookie identity made (host-only,
HttpOnly, SameSite=Lax so the IdP's redirect back carries it) and sends the browser to the
IdP; ``/callback`` clears it and, when identity grants a session, sets the session cookie.
"""

from __future__ import annotations

from typing import Any

import grpc
from starlette.responses import RedirectResponse, Response

from ontrackio.gateway.api.operation import PUBLIC, Call, Operation, Param, credential, json_body
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth.cookies import cookie_value
from ontrackio.gateway.problems import problem_from_rpc_error
from ontrackio.identity.signin.next_path import MAX_NEXT, safe_next
from ontrackio.identity.sso.oidc import rules
from ontrackio.identity.v1 import oidc_pb2 as opb

BINDING_COOKIE = "__Host-ontrack_oidc"
USER_AGENT_MAX = 300
# Identity may call the IdP three times (discovery, token, key set), each bounded by
# ONTRACK_OIDC_HTTP_TIMEOUT_SECONDS; the gateway waits for that.
START_DEADLINE_SECONDS = 15.0
COMPLETE_DEADLINE_SECONDS = 30.0

PROVIDER = Param(
    "provider", "path", {"type": "string", "enum": list(rules.PROVIDERS)}, "google, entra or oidc"
)
NEXT = Param("next", "query", {"type": "string", "maxLength": MAX_NEXT})
# The callback's values go to identity as they came (it judges and audits them); these
# bounds only keep absurd requests out.
CALLBACK_PARAMS = (
    PROVIDER,
    Param("code", "query", {"type": "string", "maxLength": rules.MAX_CODE}),
    Param("state", "query", {"type": "string", "maxLength": 128}),
    Param("error", "query", {"type": "string", "maxLength": 256}),
    Param("error_description", "query", {"type": "string", "maxLength": 2048}),
    Param("iss", "query", {"type": "string", "maxLength": rules.MAX_URL}),
)
_STRINGS = {"type": "array", "items": {"type": "string"}}
CONFIG = {
    "type": "object",
    "required": ["provider", "issuer", "client_id", "enabled", "has_client_secret"],
    "properties": {
        "provider": {"type": "string", "enum": list(rules.PROVIDERS)},
        "issuer": {"type": "string"},
        "client_id": {"type": "string"},
        "scopes": _STRINGS,
        "hosted_domains": _STRINGS,
        "entra_tenant": {"type": "string"},
        "enabled": {"type": "boolean"},
        "has_client_secret": {"type": "boolean"},
        "redirect_uri": {
            "type": "string",
            "description": "Register this redirect (reply) URL at the IdP.",
        },
        "updated_at": TIME,
        "updated_by": {"type": "string"},
    },
}
NEW_CONFIG = {
    "type": "object",
    "additionalProperties": False,
    "required": ["client_id"],
    "properties": {
        "issuer": {
            "type": "string",
            "maxLength": rules.MAX_URL,
            "description": "Discovery is issuer + /.well-known/openid-configuration; "
            "google and entra have defaults.",
        },
        "client_id": {"type": "string", "minLength": 1, "maxLength": rules.MAX_CLIENT_ID},
        "client_secret": {
            "type": "string",
            "maxLength": rules.MAX_CLIENT_SECRET,
            "writeOnly": True,
            "description": "Never returned; omit to keep the stored one.",
        },
        "scopes": {
            "type": "array",
            "maxItems": rules.MAX_SCOPES,
            "items": {"type": "string", "maxLength": 128},
        },
        "hosted_domains": {
            "type": "array",
            "maxItems": rules.MAX_DOMAINS,
            "items": {"type": "string", "maxLength": 253},
        },
        "entra_tenant": {"type": "string", "maxLength": 64},
        "enabled": {"type": "boolean"},
    },
}


def config_json(c: opb.OidcConfig, origin: str) -> dict[str, Any]:
    return {
        "provider": c.provider,
        "issuer": c.issuer,
        "client_id": c.client_id,
        "scopes": list(c.scopes),
        "hosted_domains": list(c.hosted_domains),
        "entra_tenant": c.entra_tenant,
        "enabled": c.enabled,
        "has_client_secret": c.has_client_secret,
        "redirect_uri": origin + c.redirect_path,
        "updated_at": time_json(c, "updated_at"),
        "updated_by": c.updated_by,
    }


def binding_of(cookie_headers: list[str]) -> str:
    """The binding cookie's value; "" if absent or sent more than once (ambiguous)."""
    return cookie_value(cookie_headers, BINDING_COOKIE) or ""


def _call(c: Call, s: Services, method: Any, request: Any, timeout: float) -> Any:
    return s.upstream.call(
        method,
        request,
        tenant=c.tenant,
        client_address=str(c.client_ip) if c.client_ip is not None else None,
        request_id=c.request_id,
        timeout=timeout,
    )


# -- the browser's ----------------------------------------------------------------------------


async def login(c: Call, s: Services):
    r = await _call(
        c,
        s,
        s.upstream.oidc.StartLogin,
        opb.StartOidcLoginRequest(
            provider=c.params["provider"],
            next=safe_next(c.params.get("next")),
            origin=s.canonical_origin(c.tenant),
            client_address=str(c.client_ip or ""),
        ),
        START_DEADLINE_SECONDS,
    )
    response = RedirectResponse(
        r.authorization_url, status_code=302, headers={"Cache-Control": "no-store"}
    )
    response.set_cookie(
        BINDING_COOKIE,
        r.binding,
        max_age=r.expires_in_seconds,
        path="/",
        secure=s.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


async def callback(c: Call, s: Services):
    p = c.params
    headers = getattr(c.headers, "getlist", None)
    cookies = headers("cookie") if headers else [c.headers.get("cookie", "")]
    try:
        grant = await _call(
            c,
            s,
            s.upstream.oidc.CompleteLogin,
            opb.CompleteOidcLoginRequest(
                provider=p["provider"],
                code=p.get("code", ""),
                state=p.get("state", ""),
                error=p.get("error", ""),
                error_description=p.get("error_description", ""),
                iss=p.get("iss", ""),
                origin=s.canonical_origin(c.tenant),
                binding=binding_of(cookies),
                client_address=str(c.client_ip or ""),
                user_agent=c.headers.get("user-agent", "")[:USER_AGENT_MAX],
            ),
            COMPLETE_DEADLINE_SECONDS,
        )
    except grpc.aio.AioRpcError as exc:
        response: Response = problem_from_rpc_error(exc)
    else:
        response = s.grant_response(grant)
    response.delete_cookie(
        BINDING_COOKIE, path="/", secure=s.secure_cookies, httponly=True, samesite="lax"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


LABELS = {
    "google": "Sign in with Google",
    "entra": "Sign in with Microsoft",
    "oidc": "Sign in with your organisation's account",
}


def login_links(providers, query: str) -> list[tuple[str, str]]:
    """The enabled OIDC providers as (label, login URL) for the sign-in page, carrying
    ``query`` (the page's safe ``next``); a provider this gateway has no label for is left
    out."""
    return [(LABELS[p], f"/auth/oidc/{p}/login{query}") for p in providers if p in LABELS]


# -- admin ------------------------------------------------------------------------------------


async def get_config(c: Call, s: Services):
    r = await s.rpc(
        c, s.upstream.oidc.GetOidcConfig, opb.GetOidcConfigRequest(provider=c.params["provider"])
    )
    return config_json(r, s.canonical_origin(c.tenant))


async def set_config(c: Call, s: Services):
    b = c.body
    r = await s.rpc(
        c,
        s.upstream.oidc.SetOidcConfig,
        opb.SetOidcConfigRequest(
            provider=c.params["provider"],
            issuer=b.get("issuer", ""),
            client_id=b["client_id"],
            client_secret=b.get("client_secret", ""),
            scopes=b.get("scopes", []),
            hosted_domains=b.get("hosted_domains", []),
            entra_tenant=b.get("entra_tenant", ""),
            enabled=b.get("enabled", True),
        ),
    )
    return config_json(r, s.canonical_origin(c.tenant)), {"Cache-Control": "no-store"}


ADMIN = credential("admin")
OPERATIONS = [
    Operation(
        "GET",
        "/auth/oidc/{provider}/login",
        "oidcLogin",
        "Start an OIDC sign-in: 302 to the tenant's IdP (state, nonce, PKCE), with a cookie "
        "binding the sign-in to this browser.",
        login,
        PUBLIC,
        {"type": "string"},
        status=302,
        params=(PROVIDER, NEXT),
        tags=("sign-in",),
    ),
    Operation(
        "GET",
        "/auth/oidc/{provider}/callback",
        "oidcCallback",
        "The IdP's redirect back: a signed-in session (cookie) and 303 to where sign-in "
        "began; 403 for anything refused (every refusal is audited).",
        callback,
        PUBLIC,
        {"type": "string"},
        status=303,
        params=CALLBACK_PARAMS,
        tags=("sign-in",),
    ),
    Operation(
        "GET",
        "/admin/api/v1/sso/oidc/{provider}",
        "getOidcConfig",
        "One OIDC provider's configuration, with the redirect URI to register at the IdP "
        "(the client secret is never returned).",
        get_config,
        ADMIN,
        CONFIG,
        params=(PROVIDER,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/sso/oidc/{provider}",
        "setOidcConfig",
        "Create or replace one OIDC provider's configuration (audited; the secret is kept "
        "encrypted with the tenant's key).",
        set_config,
        ADMIN,
        CONFIG,
        params=(PROVIDER,),
        body=json_body(NEW_CONFIG),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
