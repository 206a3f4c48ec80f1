"""MFA for the web front end (JSON): the signed-in user's factors (TOTP with its QR code,
passkeys, recovery codes), the step-up a session held by the MFA policy must take, the
passwordless passkey sign-in, and an admin's reset of a user's factors (identity's
MfaService).

A step that completes a held session answers with a new session cookie (the session was
rotated: its privilege changed) and the new CSRF token in the body; the old session is
dropped from this worker's cache at once. A wrong code is a 400 problem
(``https://problems.ontrack.io/mfa-code-refused``) with ``session_ended`` true once the
session has been ended for too many (then the cookie is cleared too).

WebAuthn values travel as the browser gives them: the options are the JSON of
``PublicKeyCredentialCreationOptions`` / ``RequestOptions`` (binary fields base64url, as
``PublicKeyCredential.parseCreationOptionsFromJSON`` reads them), the credential is
``PublicKeyCredential.toJSON()``. The RP id and origin are the tenant's canonical origin.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC
from typing import Any

from starlette.responses import JSONResponse, Response

from ontrackio.gateway.api.operation import (
    PUBLIC,
    SESSION,
    SESSION_DURING_MFA,
    Body,
    BodyKind,
    Call,
    Operation,
    credential,
    json_body,
)
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, UUID_ID, UUID_PATTERN, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth.cookies import cookie_value
from ontrackio.gateway.auth.session import clear_session_cookie, set_session_cookie
from ontrackio.gateway.problems import problem
from ontrackio.identity.signin.next_path import safe_next
from ontrackio.identity.v1 import mfa_pb2 as pb
from ontrackio.identity.v1 import sessions_pb2 as spb

PASSKEY_BINDING_COOKIE = "__Host-ontrack_webauthn"
BINDING_SECONDS = 300
CODE_REFUSED_TYPE = "https://problems.ontrack.io/mfa-code-refused"
MAX_CREDENTIAL_BYTES = 64 * 1024
STAGE = {"type": "string", "enum": ["full", "step_up", "enrol"]}

CODE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {"code": {"type": "string", "maxLength": 64}},
}
FRESH_BODY = Body(
    BodyKind.JSON,
    ("application/json",),
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {"fresh": {"type": "boolean"}},
    },
    1024,
    optional=True,
)
CREDENTIAL = {
    "type": "object",
    "description": "PublicKeyCredential.toJSON() of the browser's answer.",
    "maxProperties": 16,
}


def _credential_body(name: str, extra: dict[str, Any]) -> dict[str, Any]:
    """A body carrying the browser's credential for a challenge, plus ``name``: ``extra``."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["challenge_id", "credential"],
        "properties": {
            "challenge_id": {"type": "string", "pattern": UUID_PATTERN},
            "credential": CREDENTIAL,
            name: extra,
        },
    }


REGISTRATION_BODY = _credential_body("name", {"type": "string", "maxLength": 64})
ASSERTION_BODY = _credential_body("next", {"type": "string", "maxLength": 2000})
RENAME_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 64}},
}
PASSKEY = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "created_at": TIME,
        "last_used_at": TIME,
        "flagged": {"type": "boolean", "description": "Its counter went backwards: refused."},
        "backed_up": {"type": "boolean"},
        "aaguid": {"type": "string"},
    },
}
STATUS = {
    "type": "object",
    "properties": {
        "stage": STAGE,
        "required": {"type": "boolean", "description": "The MFA policy covers this user."},
        "policy": {"type": "string", "enum": ["off", "admins", "everyone"]},
        "totp": {"type": "boolean"},
        "totp_pending": {"type": "boolean"},
        "passkeys": {"type": "array", "items": PASSKEY},
        "recovery_codes_left": {"type": "integer"},
        "enrol_by": TIME,
        "mfa_source": {"type": "string", "enum": ["idp", "local", "none"]},
        "factor": {"type": "string"},
    },
}
TOTP_ENROLMENT = {
    "type": "object",
    "properties": {
        "secret": {"type": "string", "description": "Base32, to type into an app by hand."},
        "uri": {"type": "string", "description": "otpauth://totp/… (what the QR code holds)."},
        "qr_svg": {"type": "string", "description": "The QR code, an SVG document."},
    },
}
STEP = {
    "type": "object",
    "properties": {
        "accepted": {"type": "boolean"},
        "stage": STAGE,
        "csrf_token": {"type": "string", "description": "The new session's, when rotated."},
        "recovery_codes": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Shown once: a first factor's recovery codes.",
        },
        "recovery_codes_left": {"type": "integer"},
    },
}
OPTIONS = {
    "type": "object",
    "properties": {
        "challenge_id": {"type": "string", "format": "uuid"},
        "options": {"type": "object", "description": "WebAuthn options (JSON form)."},
    },
}
CODES = {"type": "object", "properties": {"codes": {"type": "array", "items": {"type": "string"}}}}
RESET = {
    "type": "object",
    "properties": {k: {"type": "integer"} for k in ("totp", "passkeys", "recovery_codes")},
}
MFA_ERRORS = (400, 401, 403, 404, 409, 429, 502, 503, 504)


def _session_id(c: Call) -> str:
    return getattr(c.principal, "session_id", "")


def passkey_json(p: pb.Passkey) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "created_at": time_json(p, "created_at"),
        "last_used_at": time_json(p, "last_used_at"),
        "flagged": p.flagged,
        "backed_up": p.backed_up,
        "aaguid": p.aaguid,
    }


def status_json(s: pb.MfaStatus) -> dict[str, Any]:
    return {
        "stage": s.stage,
        "required": s.required,
        "policy": s.policy,
        "totp": s.totp,
        "totp_pending": s.totp_pending,
        "passkeys": [passkey_json(p) for p in s.passkeys],
        "recovery_codes_left": s.recovery_codes_left,
        "enrol_by": time_json(s, "enrol_by"),
        "mfa_source": s.mfa_source,
        "factor": s.factor,
    }


def refusal_text(r: pb.MfaStepResult) -> str:
    """What the user is told of a refused step (the JSON problem's detail, the page's)."""
    if r.session_ended:
        return "Too many wrong codes: you have been signed out."
    if r.HasField("locked_until"):
        until = r.locked_until.ToDatetime(tzinfo=UTC)
        return (
            "Too many wrong codes for this account: try again after "
            f"{until:%Y-%m-%d %H:%M} UTC, or ask an admin to unlock it."
        )
    return "That code or passkey was not accepted. Try again."


def step_response(c: Call, s: Services, r: pb.MfaStepResult) -> Response:
    """The JSON answer to a step: the new session's cookie when it was rotated; a 400
    problem for a refused code (and a cleared cookie when the session ended for it)."""
    if not r.accepted:
        extensions = {"session_ended": r.session_ended, "stage": r.stage}
        if r.HasField("locked_until"):
            extensions["locked_until"] = time_json(r, "locked_until")
        response: Response = problem(
            400,
            detail=refusal_text(r),
            type_=CODE_REFUSED_TYPE,
            title="MFA code refused",
            extensions=extensions,
        )
        if r.session_ended:
            if s.sessions is not None:
                s.sessions.forget(c.tenant, [_session_id(c)])
            clear_session_cookie(response, secure=s.secure_cookies)
        response.headers["Cache-Control"] = "no-store"
        return response
    body: dict[str, Any] = {
        "accepted": True,
        "stage": r.stage,
        "recovery_codes": list(r.recovery_codes),
        "recovery_codes_left": r.recovery_codes_left,
    }
    if r.HasField("grant"):
        body["csrf_token"] = r.grant.csrf_token
    response = JSONResponse(body)
    if r.HasField("grant"):
        set_session_cookie(response, r.grant, secure=s.secure_cookies)
        if s.sessions is not None:
            s.sessions.forget(c.tenant, [_session_id(c)])
    response.headers["Cache-Control"] = "no-store"
    return response


def _ref(c: Call) -> pb.MfaSessionRef:
    return pb.MfaSessionRef(session_id=_session_id(c))


async def get_status(c: Call, s: Services):
    return status_json(await s.rpc(c, s.upstream.mfa.GetMfaStatus, _ref(c))), {
        "Cache-Control": "no-store"
    }


async def begin_totp(c: Call, s: Services):
    fresh = bool(c.body.get("fresh")) if isinstance(c.body, dict) else False
    r = await s.rpc(
        c, s.upstream.mfa.BeginTotp, pb.BeginTotpRequest(session_id=_session_id(c), fresh=fresh)
    )
    return {"secret": r.secret, "uri": r.uri, "qr_svg": r.qr_svg}, {"Cache-Control": "no-store"}


def _code_step(method_name: str):
    async def handler(c: Call, s: Services):
        method = getattr(s.upstream.mfa, method_name)
        r = await s.rpc(
            c, method, pb.MfaCodeRequest(session_id=_session_id(c), code=c.body["code"])
        )
        return step_response(c, s, r)

    return handler


async def remove_totp(c: Call, s: Services):
    return status_json(await s.rpc(c, s.upstream.mfa.RemoveTotp, _ref(c)))


async def regenerate_codes(c: Call, s: Services):
    r = await s.rpc(c, s.upstream.mfa.RegenerateRecoveryCodes, _ref(c))
    return {"codes": list(r.codes)}, {"Cache-Control": "no-store"}


def _options_json(r: pb.PasskeyOptions) -> dict[str, Any]:
    return {"challenge_id": r.challenge_id, "options": json.loads(r.options_json)}


def _begin_passkey(method_name: str):
    """The handler asking identity's ``method_name`` for WebAuthn options on this session."""

    async def handler(c: Call, s: Services):
        method = getattr(s.upstream.mfa, method_name)
        begin = pb.PasskeyBegin(session_id=_session_id(c), origin=s.canonical_origin(c.tenant))
        return _options_json(await s.rpc(c, method, begin)), {"Cache-Control": "no-store"}

    return handler


def _credential(c: Call) -> str:
    return json.dumps(c.body["credential"], ensure_ascii=False, separators=(",", ":"))


def _finish_passkey(method_name: str, *, named: bool):
    """The handler giving identity's ``method_name`` the browser's credential for this
    session's challenge (with the passkey's name when ``named``: a registration)."""

    async def handler(c: Call, s: Services):
        finish = pb.PasskeyFinish(
            session_id=_session_id(c),
            origin=s.canonical_origin(c.tenant),
            challenge_id=c.body["challenge_id"],
            response_json=_credential(c),
            name=(c.body.get("name") or "Passkey") if named else "",
        )
        return step_response(c, s, await s.rpc(c, getattr(s.upstream.mfa, method_name), finish))

    return handler


async def rename_passkey(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.mfa.RenamePasskey,
        pb.PasskeyChange(session_id=_session_id(c), passkey_id=c.params["id"], name=c.body["name"]),
    )
    return status_json(r)


async def remove_passkey(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.mfa.RemovePasskey,
        pb.PasskeyChange(session_id=_session_id(c), passkey_id=c.params["id"]),
    )
    return status_json(r)


# -- passwordless sign-in (no session yet) --------------------------------------------------


def _binding(c: Call) -> bytes:
    """The browser's binding cookie (set with the options), b"" when absent or malformed."""
    getlist = getattr(c.headers, "getlist", None)
    headers = getlist("cookie") if getlist else [c.headers.get("cookie", "")]
    value = cookie_value(headers, PASSKEY_BINDING_COOKIE) or ""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return b""
    return raw if 16 <= len(raw) <= 64 else b""


async def begin_sign_in(c: Call, s: Services):
    binding = secrets.token_bytes(32)
    r = await s.rpc(
        c,
        s.upstream.mfa.BeginPasskeySignIn,
        pb.PasskeySignInBegin(
            origin=s.canonical_origin(c.tenant),
            binding=binding,
            client_address=str(c.client_ip or ""),
        ),
    )
    response = JSONResponse(_options_json(r), headers={"Cache-Control": "no-store"})
    response.set_cookie(
        PASSKEY_BINDING_COOKIE,
        base64.urlsafe_b64encode(binding).rstrip(b"=").decode(),
        max_age=BINDING_SECONDS,
        path="/",
        secure=s.secure_cookies,
        httponly=True,
        samesite="strict",
    )
    return response


async def finish_sign_in(c: Call, s: Services):
    grant: spb.SessionGrant = await s.rpc(
        c,
        s.upstream.mfa.FinishPasskeySignIn,
        pb.PasskeySignIn(
            origin=s.canonical_origin(c.tenant),
            binding=_binding(c),
            challenge_id=c.body["challenge_id"],
            response_json=_credential(c),
            client_address=str(c.client_ip or ""),
            user_agent=c.headers.get("user-agent", "")[:300],
            next=safe_next(c.body.get("next") or "/"),
        ),
    )
    response = JSONResponse(
        {
            "stage": grant.stage or "full",
            "next": safe_next(grant.next),
            "csrf_token": grant.csrf_token,
        },
        headers={"Cache-Control": "no-store"},
    )
    set_session_cookie(response, grant, secure=s.secure_cookies)
    response.delete_cookie(
        PASSKEY_BINDING_COOKIE, path="/", secure=s.secure_cookies, httponly=True, samesite="strict"
    )
    return response


async def reset_user(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.mfa.ResetUserMfa,
        pb.ResetUserMfaRequest(session_id=_session_id(c), user_id=c.params["id"]),
    )
    if s.sessions is not None:
        s.sessions.forget(c.tenant, [], c.params["id"])
    return {"totp": r.totp, "passkeys": r.passkeys, "recovery_codes": r.recovery_codes}


TAGS = ("mfa",)


def _op(method, path, op_id, summary, handler, auth, schema, **kw) -> Operation:
    return Operation(
        method, path, op_id, summary, handler, auth, schema, tags=TAGS, error_codes=MFA_ERRORS, **kw
    )


OPERATIONS = [
    _op(
        "GET",
        "/api/v1/mfa",
        "getMfaStatus",
        "The signed-in user's factors and what the MFA policy asks of them (also for a "
        "session held at step_up or enrol).",
        get_status,
        SESSION_DURING_MFA,
        STATUS,
    ),
    _op(
        "POST",
        "/api/v1/mfa/totp",
        "beginTotp",
        "Set up an authenticator app: the secret, its otpauth:// URI and QR code (SVG); a "
        "set-up pending for under 15 minutes is given again unless `fresh`. Not a factor "
        "until confirmed by a first code. 409 when one is set up already.",
        begin_totp,
        SESSION_DURING_MFA,
        TOTP_ENROLMENT,
        body=FRESH_BODY,
    ),
    _op(
        "POST",
        "/api/v1/mfa/totp/confirm",
        "confirmTotp",
        "Confirm the set-up with the app's current code. A first factor brings ten recovery "
        "codes (shown once); a session held at enrol becomes full (new cookie).",
        _code_step("ConfirmTotp"),
        SESSION_DURING_MFA,
        STEP,
        body=json_body(CODE_BODY, max_bytes=1024),
    ),
    _op(
        "DELETE",
        "/api/v1/mfa/totp",
        "removeTotp",
        "Remove the authenticator app (409 when it is the last factor and MFA is required).",
        remove_totp,
        SESSION,
        STATUS,
    ),
    _op(
        "POST",
        "/api/v1/mfa/verify",
        "verifyTotp",
        "Step-up with the authenticator app's code (each code is accepted once).",
        _code_step("VerifyTotp"),
        SESSION_DURING_MFA,
        STEP,
        body=json_body(CODE_BODY, max_bytes=1024),
    ),
    _op(
        "POST",
        "/api/v1/mfa/recovery",
        "useRecoveryCode",
        "Step-up with a recovery code (single use).",
        _code_step("UseRecoveryCode"),
        SESSION_DURING_MFA,
        STEP,
        body=json_body(CODE_BODY, max_bytes=1024),
    ),
    _op(
        "POST",
        "/api/v1/mfa/recovery-codes",
        "regenerateRecoveryCodes",
        "Ten new recovery codes (shown once); the earlier ones stop working.",
        regenerate_codes,
        SESSION,
        CODES,
    ),
    _op(
        "POST",
        "/api/v1/mfa/passkeys/options",
        "beginPasskeyRegistration",
        "WebAuthn creation options for a new passkey (discoverable, attestation none).",
        _begin_passkey("BeginPasskeyRegistration"),
        SESSION_DURING_MFA,
        OPTIONS,
    ),
    _op(
        "POST",
        "/api/v1/mfa/passkeys",
        "registerPasskey",
        "Register the passkey the browser created (its name given here).",
        _finish_passkey("FinishPasskeyRegistration", named=True),
        SESSION_DURING_MFA,
        STEP,
        body=json_body(REGISTRATION_BODY, max_bytes=MAX_CREDENTIAL_BYTES),
    ),
    _op(
        "POST",
        "/api/v1/mfa/passkeys/step-up/options",
        "beginPasskeyStepUp",
        "WebAuthn request options for a step-up with one of the user's passkeys.",
        _begin_passkey("BeginPasskeyStepUp"),
        SESSION_DURING_MFA,
        OPTIONS,
    ),
    _op(
        "POST",
        "/api/v1/mfa/passkeys/step-up",
        "passkeyStepUp",
        "Step-up with a passkey assertion.",
        _finish_passkey("FinishPasskeyStepUp", named=False),
        SESSION_DURING_MFA,
        STEP,
        body=json_body(ASSERTION_BODY, max_bytes=MAX_CREDENTIAL_BYTES),
    ),
    _op(
        "PATCH",
        "/api/v1/mfa/passkeys/{id}",
        "renamePasskey",
        "Rename one of the user's passkeys.",
        rename_passkey,
        SESSION,
        STATUS,
        params=(UUID_ID,),
        body=json_body(RENAME_BODY, max_bytes=1024),
    ),
    _op(
        "DELETE",
        "/api/v1/mfa/passkeys/{id}",
        "removePasskey",
        "Remove one of the user's passkeys (409 when it is the last factor and MFA is required).",
        remove_passkey,
        SESSION,
        STATUS,
        params=(UUID_ID,),
    ),
    _op(
        "POST",
        "/api/v1/signin/passkey/options",
        "beginPasskeySignIn",
        "Passwordless sign-in: WebAuthn request options for a discoverable passkey, and a "
        "cookie binding the challenge to this browser.",
        begin_sign_in,
        PUBLIC,
        OPTIONS,
    ),
    _op(
        "POST",
        "/api/v1/signin/passkey",
        "passkeySignIn",
        "Passwordless sign-in: the browser's assertion; sets the session cookie (a passkey "
        "with user verification is MFA by itself). 403 for any refusal.",
        finish_sign_in,
        PUBLIC,
        {
            "type": "object",
            "properties": {
                "stage": STAGE,
                "next": {"type": "string"},
                "csrf_token": {"type": "string"},
            },
        },
        body=json_body(ASSERTION_BODY, max_bytes=MAX_CREDENTIAL_BYTES),
    ),
    Operation(
        "POST",
        "/admin/api/v1/users/{id}/mfa/reset",
        "resetUserMfa",
        "Remove every factor of a user and end their sessions (audited). Only from an admin's "
        "own session that began or stepped up in the last five minutes.",
        reset_user,
        credential("admin"),
        RESET,
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
