"""Local sign-in at the edge: the sign-in and invitation pages, the password form's target,
and the admin API of invitations and lockouts (identity's SignInService).

The gateway only forwards: the raw form values, the client's address and user agent, and
the tenant's canonical origin (for invitation links); identity decides. Pages are
server-rendered (gateway/pages), work without JavaScript, and every form passes the
pre-session CSRF checks (pages/form_token.py: same origin plus a signed double-submit
token). A refused password sign-in answers one message whatever identity's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.responses import Response

from ontrackio.gateway.api import oidc
from ontrackio.gateway.api.operation import (
    PUBLIC,
    SESSION_DURING_MFA,
    Call,
    Operation,
    Param,
    credential,
    form_body,
    json_body,
)
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, UUID_ID, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth import csrf
from ontrackio.gateway.auth.session import grant_response
from ontrackio.gateway.pages import form_token
from ontrackio.gateway.pages.render import error_page, page
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.sessions import rules as session_rules
from ontrackio.identity.signin import passwords
from ontrackio.identity.signin.next_path import safe_next
from ontrackio.identity.v1 import sessions_pb2 as sessions_pb
from ontrackio.identity.v1 import signin_pb2 as spb

SIGN_IN_REFUSED = (
    "The email or password is not right, or this account cannot sign in with a password."
)
LINK_NOT_USABLE = (
    "This invitation link is not valid any more: it was used, replaced, revoked or it has"
    " expired. Ask your administrator for a new invitation."
)
FORM_REFUSED = "This form was not sent from this site, or it is too old. Open the page again."
MAX_FIELD = 4096  # no form value of these pages needs more (passwords: 128 characters)

SAML_LABEL = "Sign in with your organisation (SAML single sign-on)"
# /signin?break_glass=1 shows the password form of a tenant that requires SSO. It only shows
# the form: identity still lets only the named break-glass owners in (no bypass).
BREAK_GLASS_PARAM = "break_glass"


async def sign_in_options(c: Call, s: Services, nxt: str) -> tuple[list[tuple[str, str]], bool]:
    """(the SSO choices, as (label, url), each keeping ``nxt``: the tenant's SAML IdP when
    one is configured, then its enabled OIDC providers; whether the tenant requires SSO)."""
    options = await s.upstream.call(
        s.upstream.signin.GetSignInOptions, spb.GetSignInOptionsRequest(), tenant=c.tenant
    )
    query = "" if nxt == "/" else "?" + urlencode({"next": nxt})
    methods = [(SAML_LABEL, f"/auth/saml/login{query}")] if options.saml else []
    return methods + oidc.login_links(options.oidc_providers, query), options.sso_required


def _origin(c: Call, s: Services) -> str:
    return s.settings.canonical_origin(c.tenant)


def _request_origin(c: Call, s: Services) -> str | None:
    """The origin this request was sent to: the canonical scheme and the request's Host."""
    scheme = _origin(c, s).partition("://")[0]
    hosts = c.headers.getlist("host") if hasattr(c.headers, "getlist") else [c.headers.get("host")]
    return csrf.origin_of(f"{scheme}://{hosts[0]}") if len(hosts) == 1 and hosts[0] else None


def _form_key(s: Services) -> bytes:
    return form_token.derive_key(s.core.token_hash_key.get_secret_value().encode())


def _with_form(c: Call, s: Services, render: Callable[[str], Response]) -> Response:
    """A page whose form carries a fresh token for the caller's form cookie: a new one when
    there is none of ours, and set again either way, so the cookie outlives the token."""
    nonce = form_token.cookie_nonce(c.headers.getlist("cookie")) or form_token.new_nonce()
    response = render(form_token.token(_form_key(s), c.tenant, nonce))
    form_token.set_cookie(response, nonce, secure=s.secure_cookies)
    return response


def _form_refusal(c: Call, s: Services) -> Response | None:
    """The refusal of a pre-session form that fails its CSRF checks, else None."""
    same_origin = csrf.origin_ok(c.headers, _request_origin(c, s))
    nonce = form_token.cookie_nonce(c.headers.getlist("cookie"))
    signed = form_token.valid(_form_key(s), c.tenant, nonce, (c.body or {}).get(form_token.FIELD))
    if same_origin and signed:
        return None
    return error_page(403, FORM_REFUSED, title="Form refused")


def _field(c: Call, name: str) -> str:
    value = (c.body or {}).get(name, "")
    return value if isinstance(value, str) else ""


# -- sign-in ----------------------------------------------------------------------------------


def _signin_page(
    c: Call, s: Services, nxt: str, options, *, status=200, errors=(), email="", password=None
):
    """The sign-in page: the SSO choices, and the password form unless the tenant requires
    SSO, where it is kept for break-glass owners behind an explicit link (``password``:
    that link was followed, or a password was just refused). With no SSO configured the
    form is always shown (break-glass owners must still get in)."""
    methods, sso_required = options
    shown = password or not sso_required or not methods
    query = "" if nxt == "/" else "&" + urlencode({"next": nxt})
    return _with_form(
        c,
        s,
        lambda token: page(
            "signin",
            status,
            title="Sign in",
            errors=errors,
            methods=methods,
            password_allowed=shown,
            break_glass_link="" if shown else f"/signin?{BREAK_GLASS_PARAM}=1{query}",
            form_token=token,
            next=nxt,
            email=email,
        ),
    )


async def signin_page(c: Call, s: Services):
    nxt = safe_next(c.params.get("next"))
    options = await sign_in_options(c, s, nxt)
    return _signin_page(c, s, nxt, options, password=c.params.get(BREAK_GLASS_PARAM) == "1")


async def password_sign_in(c: Call, s: Services):
    refused = _form_refusal(c, s)
    if refused is not None:
        return refused
    email, password = _field(c, "email")[:MAX_FIELD], _field(c, "password")[:MAX_FIELD]
    nxt = safe_next(_field(c, "next"))
    try:
        grant = await s.rpc(
            c,
            s.upstream.signin.SignInWithPassword,
            spb.SignInWithPasswordRequest(
                email=email,
                password=password,
                next=nxt,
                client_address=str(c.client_ip or ""),
                user_agent=c.headers.get("user-agent", "")[:300],
            ),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
            raise
        options = await sign_in_options(c, s, nxt)
        return _signin_page(
            c,
            s,
            nxt,
            options,
            status=401,
            errors=[("email", SIGN_IN_REFUSED)],
            email=email,
            password=True,
        )
    return grant_response(grant, secure=s.secure_cookies)


# -- signing out ------------------------------------------------------------------------------


async def signout_page(c: Call, s: Services):
    """Who is signed in, and a form posting to /auth/logout with the session's CSRF token."""
    session_id = getattr(c.principal, "session_id", "")
    who = await s.rpc(
        c, s.upstream.sessions.GetSession, sessions_pb.GetSessionRequest(session_id=session_id)
    )
    return page(
        "signout",
        200,
        title="Sign out",
        email=who.email,
        csrf_field=csrf.FORM_FIELD,
        csrf_token=session_rules.csrf_token(s.csrf_key, who.id),
    )


# -- invitations ------------------------------------------------------------------------------


def _invite_page(c: Call, s: Services, view: spb.InvitationView, token: str, *, errors=()):
    expires = view.expires_at.ToDatetime(tzinfo=UTC)
    return _with_form(
        c,
        s,
        lambda form: page(
            "invite",
            400 if errors else 200,
            title="Choose your password",
            errors=errors,
            email=view.email,
            expires=f"{expires:%Y-%m-%d %H:%M}",
            token=token,
            form_token=form,
            min_length=passwords.MIN_LENGTH,
            max_length=passwords.MAX_LENGTH,
        ),
    )


async def _view(c: Call, s: Services, token: str) -> spb.InvitationView | None:
    try:
        return await s.rpc(
            c, s.upstream.signin.GetInvitation, spb.GetInvitationRequest(token=token[:200])
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise


async def invite_page(c: Call, s: Services):
    token = c.params.get("token", "")
    view = await _view(c, s, token) if token else None
    if view is None:
        return error_page(404, LINK_NOT_USABLE, title="Invitation link not valid")
    return _invite_page(c, s, view, token)


async def accept_invitation(c: Call, s: Services):
    refused = _form_refusal(c, s)
    if refused is not None:
        return refused
    token = _field(c, "token")[:200]
    password, confirm = _field(c, "password")[:MAX_FIELD], _field(c, "confirm")[:MAX_FIELD]
    view = await _view(c, s, token) if token else None
    if view is None:
        return error_page(404, LINK_NOT_USABLE, title="Invitation link not valid")
    if password != confirm:
        return _invite_page(c, s, view, token, errors=[("confirm", "The passwords differ.")])
    try:
        grant = await s.rpc(
            c,
            s.upstream.signin.AcceptInvitation,
            spb.AcceptInvitationRequest(
                token=token,
                password=password,
                client_address=str(c.client_ip or ""),
                user_agent=c.headers.get("user-agent", "")[:300],
            ),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:  # a password rule, said by identity
            return _invite_page(c, s, view, token, errors=[("password", exc.details() or "")])
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return error_page(404, LINK_NOT_USABLE, title="Invitation link not valid")
        raise
    return grant_response(grant, secure=s.secure_cookies)


# -- admin ------------------------------------------------------------------------------------

INVITATION = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "email": {"type": "string"},
        "role": {"type": "string", "enum": list(roles.ROLES)},
        "user_id": {"type": "string", "format": "uuid"},
        "created_at": TIME,
        "created_by": {"type": "string"},
        "expires_at": TIME,
        "used_at": TIME,
        "revoked_at": TIME,
        "mail_state": {"type": "string", "enum": ["pending", "sent", "dead", ""]},
    },
    "required": ["id", "email", "role", "user_id"],
}
NEW_INVITATION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email", "role"],
    "properties": {
        "email": {"type": "string", "maxLength": 320},
        "role": {"type": "string", "enum": list(roles.ROLES)},
        "display_name": {"type": "string", "maxLength": 200},
    },
}


def invitation_json(i: spb.Invitation) -> dict[str, Any]:
    return {
        "id": i.id,
        "email": i.email,
        "role": i.role,
        "user_id": i.user_id,
        "created_at": time_json(i, "created_at"),
        "created_by": i.created_by,
        "expires_at": time_json(i, "expires_at"),
        "used_at": time_json(i, "used_at"),
        "revoked_at": time_json(i, "revoked_at"),
        "mail_state": i.mail_state,
    }


async def create_invitation(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.signin.CreateInvitation,
        spb.CreateInvitationRequest(
            email=c.body["email"],
            role=c.body["role"],
            display_name=c.body.get("display_name", ""),
            origin=_origin(c, s),
        ),
    )
    return invitation_json(r.invitation), {
        "Location": f"/admin/api/v1/invitations/{r.invitation.id}",
        "Cache-Control": "no-store",
    }


async def list_invitations(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.signin.ListInvitations,
        spb.ListInvitationsRequest(include_closed=c.params.get("include_closed", False)),
    )
    return {"items": [invitation_json(i) for i in r.invitations]}


async def revoke_invitation(c: Call, s: Services):
    return invitation_json(
        await s.rpc(
            c, s.upstream.signin.RevokeInvitation, spb.RevokeInvitationRequest(id=c.params["id"])
        )
    )


async def unlock_user(c: Call, s: Services):
    r = await s.rpc(c, s.upstream.signin.UnlockUser, spb.UnlockUserRequest(user_id=c.params["id"]))
    return {"was_locked": r.was_locked}


HTML = {"type": "string"}
PAGE_ERRORS = (400, 401, 403, 404, 429, 502, 503, 504)
# Known fields only are read; any other field is ignored (never a switch).
SIGNIN_FORM = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "password": {"type": "string"},
        "next": {"type": "string"},
        form_token.FIELD: {"type": "string"},
    },
}
INVITE_FORM = {
    "type": "object",
    "properties": {
        "token": {"type": "string"},
        "password": {"type": "string"},
        "confirm": {"type": "string"},
        form_token.FIELD: {"type": "string"},
    },
}
ADMIN = credential("admin")
OPERATIONS = [
    Operation(
        "GET",
        "/signin",
        "signInPage",
        "The tenant's sign-in page (HTML). Under `sso_required` the password form (for the"
        " break-glass owners) is shown only with `break_glass=1`.",
        signin_page,
        PUBLIC,
        HTML,
        params=(
            Param("next", "query", {"type": "string", "maxLength": 2000}),
            Param(BREAK_GLASS_PARAM, "query", {"type": "string", "enum": ["1"]}),
        ),
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=("sign-in",),
    ),
    Operation(
        "POST",
        "/auth/password",
        "signInWithPassword",
        "Sign in with email and password (the sign-in page's form); 303 with the session.",
        password_sign_in,
        PUBLIC,
        HTML,
        status=303,
        body=form_body(SIGNIN_FORM, max_bytes=16 * 1024, max_fields=16),
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=("sign-in",),
    ),
    Operation(
        "GET",
        "/signout",
        "signOutPage",
        "The signed-in person's sign-out page (HTML): a form posting to /auth/logout.",
        signout_page,
        SESSION_DURING_MFA,
        HTML,
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=("sign-in",),
    ),
    Operation(
        "GET",
        "/invite",
        "invitationPage",
        "The page of an invitation link: choose a password (HTML).",
        invite_page,
        PUBLIC,
        HTML,
        params=(Param("token", "query", {"type": "string", "maxLength": 200}),),
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=("sign-in",),
    ),
    Operation(
        "POST",
        "/invite",
        "acceptInvitation",
        "Set the password of an invitation and sign in; 303 with the session.",
        accept_invitation,
        PUBLIC,
        HTML,
        status=303,
        body=form_body(INVITE_FORM, max_bytes=16 * 1024, max_fields=16),
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=("sign-in",),
    ),
    Operation(
        "GET",
        "/admin/api/v1/invitations",
        "listInvitations",
        "List open invitations (or all, with include_closed).",
        list_invitations,
        ADMIN,
        {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": INVITATION}},
        },
        params=(Param("include_closed", "query", {"type": "boolean"}),),
        admin=True,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/invitations",
        "createInvitation",
        "Invite a person; the link is mailed to them (re-inviting replaces the old link).",
        create_invitation,
        ADMIN,
        INVITATION,
        status=201,
        body=json_body(NEW_INVITATION),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "DELETE",
        "/admin/api/v1/invitations/{id}",
        "revokeInvitation",
        "Revoke an invitation: its link stops working at once.",
        revoke_invitation,
        ADMIN,
        INVITATION,
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/users/{id}/unlock",
        "unlockUser",
        "Lift a user's sign-in lockout now.",
        unlock_user,
        ADMIN,
        {
            "type": "object",
            "required": ["was_locked"],
            "properties": {"was_locked": {"type": "boolean"}},
        },
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
