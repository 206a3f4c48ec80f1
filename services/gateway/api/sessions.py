"""Sessions and roles: who am I, signing out, and the admin's view of sessions, roles and the
sign-in policy (identity's SessionService).

Ending sessions also drops them from this worker's cache at once; the other workers learn of
it from identity's ``sessions_revoked`` event.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from ontrackio.gateway.api.operation import (
    SESSION_DURING_MFA,
    Call,
    Operation,
    Param,
    credential,
    form_body,
    json_body,
)
from ontrackio.gateway.api.schemas import (
    ADMIN_ERRORS,
    PAGING,
    TIME,
    UUID_ID,
    UUID_PATTERN,
    page_of,
    page_request,
    time_json,
)
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth import csrf
from ontrackio.gateway.auth.session import clear_session_cookie
from ontrackio.identity.mfa import policy as mfa_rules
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.sessions import rules as session_rules
from ontrackio.identity.v1 import sessions_pb2 as spb

ROLE = {"type": "string", "enum": list(roles.ROLES)}
SESSION_ITEM = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "user": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "email": {"type": "string"},
                "display_name": {"type": "string"},
            },
        },
        "roles": {"type": "array", "items": ROLE},
        "method": {"type": "string", "description": "password | saml | oidc:<provider> | …"},
        "idp": {"type": "string", "description": "The IdP's issuer for SSO sign-ins."},
        "mfa_source": {"type": "string", "enum": ["idp", "local", "none"]},
        "factor": {"type": "string"},
        "created_at": TIME,
        "last_seen_at": TIME,
        "idle_expires_at": TIME,
        "expires_at": TIME,
        "client_address": {"type": "string"},
        "user_agent": {"type": "string"},
        "stage": {
            "type": "string",
            "enum": list(mfa_rules.STAGES),
            "description": "full, or held by the MFA policy: step_up (present a factor) or "
            "enrol (set one up) before anything else.",
        },
    },
    "required": ["id", "user", "roles", "method", "mfa_source", "stage"],
}
WHO_AM_I = {
    **SESSION_ITEM,
    "properties": {
        **SESSION_ITEM["properties"],
        "csrf_token": {
            "type": "string",
            "description": "Send as X-CSRF-Token with every unsafe request made with the cookie.",
        },
    },
    "required": [*SESSION_ITEM["required"], "csrf_token"],
}
POLICY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "idle_timeout_seconds": {
            "type": "integer",
            "minimum": session_rules.MIN_IDLE_SECONDS,
            "maximum": session_rules.MAX_IDLE_SECONDS,
        },
        "absolute_timeout_seconds": {
            "type": "integer",
            "minimum": session_rules.MIN_ABSOLUTE_SECONDS,
            "maximum": session_rules.MAX_ABSOLUTE_SECONDS,
        },
        "sso_required": {"type": "boolean"},
        "break_glass_users": {
            "type": "array",
            "maxItems": 10,
            "items": {"type": "string", "pattern": UUID_PATTERN},
        },
        "jit_provisioning": {"type": "boolean"},
        "lockout_threshold": {"type": "integer", "minimum": 1, "maximum": 1000},
        "lockout_seconds": {"type": "integer", "minimum": 1, "maximum": 7 * 24 * 3600},
        "mfa_policy": {
            "type": "string",
            "enum": list(mfa_rules.POLICIES),
            "description": "Who must use MFA: nobody, owners and admins, or everyone.",
        },
        "mfa_grace_days": {
            "type": "integer",
            "minimum": 0,
            "maximum": mfa_rules.MAX_GRACE_DAYS,
            "description": "Days a newly covered user may sign in to enrol a factor.",
        },
        "mfa_evidence": {
            "type": "object",
            "description": "IdP evidence that counts as MFA, per IdP kind (SAML "
            "AuthnContextClassRef, OIDC amr/acr values); a kind not named takes the defaults, "
            "an empty list accepts nothing.",
            "additionalProperties": False,
            "properties": {
                kind: {
                    "type": "array",
                    "maxItems": mfa_rules.MAX_EVIDENCE_VALUES,
                    "items": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": mfa_rules.MAX_EVIDENCE_CHARS,
                    },
                }
                for kind in mfa_rules.IDP_KINDS
            },
        },
        "passkey_user_verification": {
            "type": "string",
            "enum": list(mfa_rules.USER_VERIFICATION),
        },
    },
}
POLICY_OUT = {
    **POLICY,
    "properties": {
        **POLICY["properties"],
        "updated_at": TIME,
        "updated_by": {"type": "string"},
        "mfa_grace_until": TIME,
        "mfa_evidence_effective": {
            "type": "object",
            "description": "What counts for each IdP kind, defaults included.",
        },
    },
}
ROLES_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["roles"],
    "properties": {"roles": {"type": "array", "minItems": 1, "maxItems": 4, "items": ROLE}},
}
USER_ROLES = {
    "type": "object",
    "properties": {"user_id": {"type": "string"}, "roles": {"type": "array", "items": ROLE}},
}
LOGOUT_FORM = {
    "type": "object",
    "additionalProperties": False,
    "properties": {csrf.FORM_FIELD: {"type": "string", "maxLength": 64}},
}


def session_json(s: spb.Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "user": {"id": s.user_id, "email": s.email, "display_name": s.display_name},
        "roles": list(s.roles),
        "method": s.method,
        "idp": s.idp,
        "mfa_source": s.mfa_source,
        "factor": s.factor,
        "created_at": time_json(s, "created_at"),
        "last_seen_at": time_json(s, "last_seen_at"),
        "idle_expires_at": time_json(s, "idle_expires_at"),
        "expires_at": time_json(s, "expires_at"),
        "client_address": s.client_address,
        "user_agent": s.user_agent,
        "stage": s.stage or mfa_rules.FULL,
    }


def policy_json(p: spb.SignInPolicy) -> dict[str, Any]:
    evidence = {k: list(v.values) for k, v in p.mfa_evidence.by_kind.items()}
    return {
        "idle_timeout_seconds": p.idle_timeout_seconds,
        "absolute_timeout_seconds": p.absolute_timeout_seconds,
        "sso_required": p.sso_required,
        "break_glass_users": list(p.break_glass_users),
        "jit_provisioning": p.jit_provisioning,
        "lockout_threshold": p.lockout_threshold,
        "lockout_seconds": p.lockout_seconds,
        "updated_at": time_json(p, "updated_at"),
        "updated_by": p.updated_by,
        "mfa_policy": p.mfa_policy,
        "mfa_grace_days": p.mfa_grace_days,
        "mfa_grace_until": time_json(p, "mfa_grace_until"),
        "mfa_evidence": evidence,
        "mfa_evidence_effective": {
            kind: sorted(mfa_rules.accepted_evidence(kind, evidence))
            for kind in mfa_rules.IDP_KINDS
        },
        "passkey_user_verification": p.passkey_user_verification,
    }


def policy_pb(body: dict[str, Any]) -> spb.SignInPolicy:
    """A SetSignInPolicy request from the merged JSON (read-only fields dropped)."""
    fields = {k: v for k, v in body.items() if k in spb.SignInPolicy.DESCRIPTOR.fields_by_name}
    for read_only in ("updated_at", "updated_by", "mfa_grace_until", "mfa_evidence"):
        fields.pop(read_only, None)
    out = spb.SignInPolicy(**fields)
    if "mfa_evidence" in body:
        out.mfa_evidence.SetInParent()
        for kind, values in body["mfa_evidence"].items():
            out.mfa_evidence.by_kind[kind].values.extend(values)
    return out


def _session_id(c: Call) -> str:
    return getattr(c.principal, "session_id", "")


async def who_am_i(c: Call, s: Services):
    reply = await s.rpc(
        c, s.upstream.sessions.GetSession, spb.GetSessionRequest(session_id=_session_id(c))
    )
    body = session_json(reply)
    body["csrf_token"] = session_rules.csrf_token(s.csrf_key, reply.id)
    return body, {"Cache-Control": "no-store"}


async def logout(c: Call, s: Services):
    session_id = _session_id(c)
    await s.rpc(c, s.upstream.sessions.EndSession, spb.EndSessionRequest(session_id=session_id))
    if s.sessions is not None:
        s.sessions.forget(c.tenant, [session_id])
    form = c.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    response: Response = RedirectResponse("/signin", 303) if form else Response(status_code=204)
    clear_session_cookie(response, secure=s.secure_cookies)
    response.headers["Cache-Control"] = "no-store"
    return response


async def list_sessions(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.sessions.ListSessions,
        spb.ListSessionsRequest(user_id=c.params.get("user_id", ""), **page_request(c)),
    )
    return {"items": [session_json(x) for x in r.sessions], "next_page_token": r.next_page_token}


async def revoke_user_sessions(c: Call, s: Services):
    user_id = c.params["id"]
    r = await s.rpc(
        c,
        s.upstream.sessions.RevokeUserSessions,
        spb.RevokeUserSessionsRequest(user_id=user_id),
    )
    if s.sessions is not None:
        s.sessions.forget(c.tenant, [], user_id)
    return {"revoked": r.revoked}


async def revoke_all_sessions(c: Call, s: Services):
    r = await s.rpc(
        c, s.upstream.sessions.RevokeUserSessions, spb.RevokeUserSessionsRequest(all_users=True)
    )
    if s.sessions is not None:
        s.sessions.forget_tenant(c.tenant)
    return {"revoked": r.revoked}


async def get_roles(c: Call, s: Services):
    r = await s.rpc(
        c, s.upstream.sessions.GetUserRoles, spb.GetUserRolesRequest(user_id=c.params["id"])
    )
    return {"user_id": r.user_id, "roles": list(r.roles)}


async def set_roles(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.sessions.SetUserRoles,
        spb.SetUserRolesRequest(user_id=c.params["id"], roles=c.body["roles"]),
    )
    if s.sessions is not None:
        s.sessions.forget(c.tenant, [], c.params["id"])
    return {"user_id": r.user_id, "roles": list(r.roles)}


async def get_policy(c: Call, s: Services):
    return policy_json(
        await s.rpc(c, s.upstream.sessions.GetSignInPolicy, spb.GetSignInPolicyRequest())
    )


async def set_policy(c: Call, s: Services):
    current = await s.rpc(c, s.upstream.sessions.GetSignInPolicy, spb.GetSignInPolicyRequest())
    merged = {**policy_json(current), **c.body}
    if "mfa_evidence" not in c.body:
        merged.pop("mfa_evidence")  # unchanged: not sent (so identity keeps it as it is)
    return policy_json(await s.rpc(c, s.upstream.sessions.SetSignInPolicy, policy_pb(merged)))


USER_FILTER = Param(
    "user_id", "query", {"type": "string", "pattern": UUID_PATTERN}, "Only this user's sessions."
)
ADMIN = credential("admin")
REVOKED = {"type": "object", "properties": {"revoked": {"type": "integer"}}}

OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/session",
        "getSession",
        "The signed-in user's session: who, roles, how they signed in, and the CSRF token.",
        who_am_i,
        SESSION_DURING_MFA,
        WHO_AM_I,
        tags=("sessions",),
    ),
    Operation(
        "POST",
        "/auth/logout",
        "logout",
        "Sign out: the session ends everywhere and the cookie is cleared (204; a form post "
        "is sent on to the sign-in page).",
        logout,
        SESSION_DURING_MFA,
        {"type": "object"},
        status=204,
        body=form_body(LOGOUT_FORM, optional=True),
        tags=("sessions",),
    ),
    Operation(
        "GET",
        "/admin/api/v1/sessions",
        "listSessions",
        "Live sessions of the tenant, or of one user.",
        list_sessions,
        ADMIN,
        page_of(SESSION_ITEM),
        params=(USER_FILTER, *PAGING),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "DELETE",
        "/admin/api/v1/sessions",
        "revokeAllSessions",
        "End every session of the tenant (everyone signs in again).",
        revoke_all_sessions,
        ADMIN,
        REVOKED,
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "DELETE",
        "/admin/api/v1/users/{id}/sessions",
        "revokeUserSessions",
        "End every session of one user.",
        revoke_user_sessions,
        ADMIN,
        REVOKED,
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "GET",
        "/admin/api/v1/users/{id}/roles",
        "getUserRoles",
        "A user's roles.",
        get_roles,
        ADMIN,
        USER_ROLES,
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/users/{id}/roles",
        "setUserRoles",
        "Replace a user's roles (only an owner grants or removes owner; the last owner stays). "
        "The user's sessions end: they sign in again with the new roles.",
        set_roles,
        ADMIN,
        USER_ROLES,
        body=json_body(ROLES_BODY),
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "GET",
        "/admin/api/v1/signin-policy",
        "getSignInPolicy",
        "The tenant's sign-in policy.",
        get_policy,
        ADMIN,
        POLICY_OUT,
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/signin-policy",
        "setSignInPolicy",
        "Change the sign-in policy (fields not given are kept). sso_required needs at least "
        "one break-glass owner.",
        set_policy,
        ADMIN,
        POLICY_OUT,
        body=json_body(POLICY),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
