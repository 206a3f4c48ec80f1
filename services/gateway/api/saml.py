"""SAML single sign-on at the edge (identity's SamlService): the browser's three URLs and the
admin configuration.

The gateway only forwards: the raw SAMLResponse and RelayState, the tenant's canonical
origin (``GatewaySettings.canonical_origin``: never the request's Host or forwarded
headers), the client address and user agent. Identity checks everything; a successful
ACS post gets the session cookie from the returned grant (``grant_response``).

A refused ACS post (malformed: 400; refused by the protocol checks or by sign-in: 403; SAML
not configured: 409) gets one answer whatever identity's reason, which only the audit trail
holds: the generic sign-in error page when the client prefers text/html over
problem+json (a browser, posting the IdP's form), else a problem with the same detail.
"""

from __future__ import annotations

from typing import Any

import grpc
from starlette.responses import RedirectResponse, Response

from ontrackio.gateway.accept import quality as accept_quality
from ontrackio.gateway.api.operation import (
    DEFAULT_ERRORS,
    PUBLIC,
    Call,
    Operation,
    Param,
    credential,
    form_body,
    json_body,
)
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth.cookies import cookie_value
from ontrackio.gateway.pages.render import error_page
from ontrackio.gateway.problems import GRPC_TO_HTTP, PROBLEM_MEDIA_TYPE, problem
from ontrackio.identity.signin.next_path import MAX_NEXT, safe_next
from ontrackio.identity.sso.saml import acs, rules
from ontrackio.identity.v1 import saml_pb2 as spb

METADATA_MEDIA_TYPE = "application/samlmetadata+xml"
# A form with SAMLResponse and RelayState; the value's own cap is identity's (acs.py).
ACS_MAX_BYTES = acs.MAX_RESPONSE_CHARS + acs.MAX_RELAY_STATE * 3 + 1024
USER_AGENT_MAX = 512
# What a person is told when SSO does not sign them in, whatever the reason (the audit
# trail has it: saml.response_refused, signin.refused).
SSO_REFUSED = (
    "Single sign-on did not sign you in. Go back to the sign-in page and try again; if it"
    " keeps happening, ask your administrator."
)
SSO_REFUSED_TITLE = "Sign-in did not work"
# The identity answers that are a refusal of this sign-in (not an outage: those stay 5xx).
# The cookie binding a SAML sign-in to the browser that began it (login CSRF), for as long
# as identity keeps the AuthnRequest (sso/saml/store.REQUEST_TTL).
BINDING_COOKIE = "__Host-ontrack_saml"
BINDING_MAX_AGE = 600
REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,  # malformed or hostile XML
        grpc.StatusCode.PERMISSION_DENIED,  # refused response, or sign-in refused
        grpc.StatusCode.FAILED_PRECONDITION,  # SAML not configured for the tenant
    }
)

_URI = {"type": "string", "maxLength": rules.MAX_URI}
_NAME = {"type": "string", "maxLength": rules.MAX_ATTRIBUTE_NAME}
SETTINGS_PROPERTIES: dict[str, Any] = {
    "email_attribute": _NAME,
    "name_attribute": _NAME,
    "groups_attribute": _NAME,
    "allow_idp_initiated": {"type": "boolean"},
    "requested_authn_context": {
        "type": "array",
        "maxItems": rules.MAX_CONTEXTS,
        "items": _URI,
    },
    "authn_context_comparison": {"type": "string", "enum": list(rules.COMPARISONS)},
}
NEW_CONFIG = {
    "type": "object",
    "additionalProperties": False,
    "required": ["idp_entity_id", "sso_url", "certificates"],
    "properties": {
        "idp_entity_id": _URI,
        "sso_url": _URI,
        "certificates": {
            "type": "array",
            "minItems": 1,
            "maxItems": rules.MAX_CERTIFICATES,
            "items": {"type": "string", "maxLength": 16384},
        },
        **SETTINGS_PROPERTIES,
    },
}
IMPORT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "xml": {"type": "string", "maxLength": 1024 * 1024},
        "url": _URI,
        "entity_id": _URI,
        **SETTINGS_PROPERTIES,
    },
    "oneOf": [{"required": ["xml"]}, {"required": ["url"]}],
}
CONFIG = {
    "type": "object",
    "required": ["idp_entity_id", "sso_url", "certificates"],
    "properties": {
        "idp_entity_id": {"type": "string"},
        "sso_url": {"type": "string"},
        "certificates": {"type": "array", "items": {"type": "string"}},
        "certificate_fingerprints": {"type": "array", "items": {"type": "string"}},
        "email_attribute": {"type": "string"},
        "name_attribute": {"type": "string"},
        "groups_attribute": {"type": "string"},
        "allow_idp_initiated": {"type": "boolean"},
        "requested_authn_context": {"type": "array", "items": {"type": "string"}},
        "authn_context_comparison": {"type": "string"},
        "updated_at": TIME,
        "updated_by": {"type": "string"},
        "sp_entity_id": {"type": "string"},
        "acs_url": {"type": "string"},
    },
}
ACS_FORM = {
    "type": "object",
    "additionalProperties": False,
    "required": ["SAMLResponse"],
    "properties": {
        "SAMLResponse": {"type": "string", "minLength": 1},
        "RelayState": {"type": "string"},
    },
}


def config_json(c: spb.SamlConfig, origin: str) -> dict[str, Any]:
    sp = rules.SpEndpoints.from_origin(origin)
    return {
        "idp_entity_id": c.idp_entity_id,
        "sso_url": c.sso_url,
        "certificates": list(c.certificates),
        "certificate_fingerprints": list(c.certificate_fingerprints),
        "email_attribute": c.email_attribute,
        "name_attribute": c.name_attribute,
        "groups_attribute": c.groups_attribute,
        "allow_idp_initiated": c.allow_idp_initiated,
        "requested_authn_context": list(c.requested_authn_context),
        "authn_context_comparison": c.authn_context_comparison,
        "updated_at": time_json(c, "updated_at"),
        "updated_by": c.updated_by,
        "sp_entity_id": sp.entity_id,  # what to paste into the IdP
        "acs_url": sp.acs_url,
    }


def settings_pb(body: dict[str, Any], **extra: Any) -> spb.SamlConfig:
    return spb.SamlConfig(
        email_attribute=body.get("email_attribute", ""),
        name_attribute=body.get("name_attribute", ""),
        groups_attribute=body.get("groups_attribute", ""),
        allow_idp_initiated=body.get("allow_idp_initiated", False),
        requested_authn_context=body.get("requested_authn_context", []),
        authn_context_comparison=body.get("authn_context_comparison", ""),
        **extra,
    )


# -- the browser's ----------------------------------------------------------------------------


def wants_page(headers: Any) -> bool:
    """A browser: its Accept gives text/html a higher quality than problem+json (a tie, as
    with no Accept or ``*/*``, is an API client)."""
    accept = ", ".join(headers.getlist("accept")) if hasattr(headers, "getlist") else ""
    return accept_quality(accept, "text/html") > accept_quality(accept, PROBLEM_MEDIA_TYPE)


def refusal(c: Call, exc: grpc.aio.AioRpcError) -> Response:
    """The one answer to a refused SSO sign-in: the page or the problem, same words."""
    status = GRPC_TO_HTTP[exc.code()]
    if wants_page(c.headers):
        return error_page(status, SSO_REFUSED, title=SSO_REFUSED_TITLE)
    return problem(status, detail=SSO_REFUSED, headers={"Cache-Control": "no-store"})


async def sp_metadata(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.saml.GetSpMetadata,
        spb.GetSpMetadataRequest(canonical_origin=s.canonical_origin(c.tenant)),
    )
    return Response(r.xml, media_type=METADATA_MEDIA_TYPE, headers={"Cache-Control": "no-cache"})


def _set_binding(response: Response, binding: str, s: Services) -> None:
    """The cookie binding the AuthnRequest to this browser. The IdP's form posts to the ACS
    from its own site, a cross-site POST that carries only ``SameSite=None`` cookies (which
    browsers accept only ``Secure``): host-only, HttpOnly, for the request's lifetime."""
    response.set_cookie(
        BINDING_COOKIE,
        binding,
        max_age=BINDING_MAX_AGE,
        path="/",
        secure=s.secure_cookies,
        httponly=True,
        samesite="none" if s.secure_cookies else "lax",
    )


def _clear_binding(response: Response, s: Services) -> Response:
    response.delete_cookie(
        BINDING_COOKIE,
        path="/",
        secure=s.secure_cookies,
        httponly=True,
        samesite="none" if s.secure_cookies else "lax",
    )
    return response


async def login(c: Call, s: Services):
    try:
        r = await s.rpc(
            c,
            s.upstream.saml.StartLogin,
            spb.StartLoginRequest(
                canonical_origin=s.canonical_origin(c.tenant),
                next=safe_next(c.params.get("next")),
                client_address=str(c.client_ip or ""),
            ),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # not configured
            raise
        return refusal(c, exc)
    response = RedirectResponse(
        r.redirect_url, status_code=302, headers={"Cache-Control": "no-store"}
    )
    _set_binding(response, r.binding, s)
    return response


async def consume(c: Call, s: Services):
    try:
        grant = await s.rpc(
            c,
            s.upstream.saml.ConsumeResponse,
            spb.ConsumeResponseRequest(
                saml_response=c.body["SAMLResponse"],
                relay_state=c.body.get("RelayState", ""),
                canonical_origin=s.canonical_origin(c.tenant),
                client_address=str(c.client_ip or ""),
                user_agent=c.headers.get("user-agent", "")[:USER_AGENT_MAX],
                binding=cookie_value(c.headers.getlist("cookie"), BINDING_COOKIE) or "",
            ),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in REFUSALS:
            raise
        return _clear_binding(refusal(c, exc), s)
    return _clear_binding(s.grant_response(grant), s)


# -- admin ------------------------------------------------------------------------------------


async def get_config(c: Call, s: Services):
    r = await s.rpc(c, s.upstream.saml.GetSamlConfig, spb.GetSamlConfigRequest())
    return config_json(r, s.canonical_origin(c.tenant))


async def set_config(c: Call, s: Services):
    b = c.body
    config = settings_pb(
        b, idp_entity_id=b["idp_entity_id"], sso_url=b["sso_url"], certificates=b["certificates"]
    )
    r = await s.rpc(c, s.upstream.saml.SetSamlConfig, spb.SetSamlConfigRequest(config=config))
    return config_json(r, s.canonical_origin(c.tenant))


async def import_metadata(c: Call, s: Services):
    b = c.body
    request = spb.ImportSamlMetadataRequest(entity_id=b.get("entity_id", ""))
    if "xml" in b:
        request.xml = b["xml"]
    elif "url" in b:
        request.url = b["url"]
    else:
        return problem(400, detail="Send the IdP's metadata as xml, or its url.")
    if set(b) & set(SETTINGS_PROPERTIES):
        request.settings.CopyFrom(settings_pb(b))
    r = await s.rpc(c, s.upstream.saml.ImportSamlMetadata, request)
    return config_json(r, s.canonical_origin(c.tenant))


ADMIN = credential("admin")
SIGN_IN_ERRORS = (*DEFAULT_ERRORS, 409)  # 409: SAML is not configured for the tenant
OPERATIONS = [
    Operation(
        "GET",
        "/auth/saml/metadata",
        "samlMetadata",
        "Our SAML SP metadata for this tenant (paste or point the IdP at it).",
        sp_metadata,
        PUBLIC,
        {"type": "string"},
        response_media_type=METADATA_MEDIA_TYPE,
        tags=("sign-in",),
    ),
    Operation(
        "GET",
        "/auth/saml/login",
        "samlLogin",
        "Start a SAML sign-in: 302 to the tenant's IdP.",
        login,
        PUBLIC,
        {"type": "string"},
        status=302,
        params=(Param("next", "query", {"type": "string", "maxLength": MAX_NEXT}),),
        error_codes=SIGN_IN_ERRORS,
        tags=("sign-in",),
        also_answers=("text/html",),  # a browser's refusals are the sign-in error page
    ),
    Operation(
        "POST",
        "/auth/saml/acs",
        "samlAcs",
        "The assertion consumer: a signed-in session (cookie) and 303 to where sign-in began.",
        consume,
        PUBLIC,
        {"type": "string"},
        status=303,
        body=form_body(ACS_FORM, max_bytes=ACS_MAX_BYTES, max_fields=4),
        error_codes=SIGN_IN_ERRORS,
        tags=("sign-in",),
        also_answers=("text/html",),  # a browser's refusals are the sign-in error page
    ),
    Operation(
        "GET",
        "/admin/api/v1/sso/saml",
        "getSamlConfig",
        "The tenant's SAML IdP configuration, with our entity id and ACS URL.",
        get_config,
        ADMIN,
        CONFIG,
        admin=True,
        error_codes=ADMIN_ERRORS,  # 409: SAML is not configured for the tenant
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/sso/saml",
        "setSamlConfig",
        "Replace the SAML IdP configuration (certificates: every one listed is trusted).",
        set_config,
        ADMIN,
        CONFIG,
        body=json_body(NEW_CONFIG),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/sso/saml/metadata",
        "importSamlMetadata",
        "Configure the IdP from its metadata (XML, or an https URL identity fetches).",
        import_metadata,
        ADMIN,
        CONFIG,
        body=json_body(IMPORT, max_bytes=2 * 1024 * 1024),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
