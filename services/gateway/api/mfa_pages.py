"""The MFA pages (HTML, server-rendered, gateway/pages): the page a session the MFA policy
holds is sent to (``/signin/mfa``: a step-up with a TOTP code, a recovery code or a passkey;
or, at ``enrol``, setting up a first factor), the forms' targets, and the signed-in user's
security page (``/account/security``: their factors, set up and removed).

Every step is identity's (MfaService, as the JSON API of api/mfa.py calls it); the gateway
only forwards the typed code with the session. Forms carry the session's CSRF token as a
field (like the sign-out form); the passkey buttons need the one WebAuthn script
(pages/templates/webauthn.js), which calls the JSON API, and stay hidden without it.

A step that completes a held session answers with the new session's cookie (the session
was rotated) and drops the old one from this worker's cache. A first factor brings ten
recovery codes, shown once: the answer to that step is the page showing them (a redirect
would lose them), with a link on to ``next``. A wrong code shows the form again with the
error; once identity has ended the session for too many, the browser goes to sign in.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.responses import Response

from ontrackio.gateway.api.mfa import refusal_text
from ontrackio.gateway.api.operation import (
    SESSION,
    SESSION_DURING_MFA,
    Call,
    Operation,
    Param,
    form_body,
)
from ontrackio.gateway.api.schemas import UUID_ID
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth import csrf
from ontrackio.gateway.auth.session import MFA_PAGE, clear_session_cookie, set_session_cookie
from ontrackio.gateway.pages.render import page
from ontrackio.identity.mfa import policy
from ontrackio.identity.sessions import rules as session_rules
from ontrackio.identity.signin.next_path import safe_next
from ontrackio.identity.v1 import mfa_pb2 as pb
from ontrackio.identity.v1 import sessions_pb2 as sessions_pb

SECURITY_PAGE = "/account/security"
SIGN_IN_PAGE = "/signin"
WRONG_CODE = "That code was not accepted. Check it and try again."
ENTER_CODE = "Enter the code."
MAX_CODE_CHARS = 64  # what identity reads of a typed code is shorter (totp, recovery)

STEP_UP_TITLE = "Confirm it is you"
ENROL_TITLE = "Set up a second factor"
SETUP_TITLE = "Set up an authenticator app"
CODES_TITLE = "Save your recovery codes"
SECURITY_TITLE = "Sign-in security"


# -- helpers ----------------------------------------------------------------------------------


def _session_id(c: Call) -> str:
    return getattr(c.principal, "session_id", "")


def _ref(c: Call) -> pb.MfaSessionRef:
    return pb.MfaSessionRef(session_id=_session_id(c))


def _csrf(c: Call, s: Services) -> str:
    return session_rules.csrf_token(s.csrf_key, _session_id(c))


def _field(c: Call, name: str) -> str:
    value = (c.body or {}).get(name, "")
    return value if isinstance(value, str) else ""


def _form_next(c: Call) -> str:
    return safe_next(_field(c, "next"))


def _with_next(path: str, nxt: str) -> str:
    return path if nxt == "/" else f"{path}?{urlencode({'next': nxt})}"


def _when(message: Any, name: str) -> str:
    """A timestamp field as people read it ("" when unset)."""
    if not message.HasField(name):
        return ""
    return f"{getattr(message, name).ToDatetime(tzinfo=UTC):%Y-%m-%d %H:%M} UTC"


def _enrol_by(status: pb.MfaStatus) -> dict[str, Any]:
    """By when the user must have a factor: a time to come, or past (an invitation accepted
    after the grace period opens at enrolment still, this once)."""
    if not status.HasField("enrol_by"):
        return {}
    if status.enrol_by.ToDatetime(tzinfo=UTC) <= datetime.now(UTC):
        return {"enrol_overdue": True}
    return {"enrol_by": _when(status, "enrol_by")}


def _redirect(location: str) -> Response:
    return Response(status_code=303, headers={"Location": location, "Cache-Control": "no-store"})


def _rotated(c: Call, s: Services, response: Response, r: pb.MfaStepResult) -> Response:
    """The new session's cookie on ``response`` when the step rotated the session."""
    if r.HasField("grant"):
        set_session_cookie(response, r.grant, secure=s.secure_cookies)
        if s.sessions is not None:
            s.sessions.forget(c.tenant, [_session_id(c)])
    return response


def _signed_out(c: Call, s: Services, nxt: str) -> Response:
    """The session is over (too many wrong codes, or gone): to sign in again, cookie cleared."""
    if s.sessions is not None:
        s.sessions.forget(c.tenant, [_session_id(c)])
    response = _redirect(_with_next(SIGN_IN_PAGE, nxt))
    clear_session_cookie(response, secure=s.secure_cookies)
    return response


def _context(c: Call, s: Services, nxt: str, **kw: Any) -> dict[str, Any]:
    """What every variant of the MFA page's template reads."""
    base: dict[str, Any] = {
        "mode": policy.STEP_UP,
        "next": nxt,
        "csrf_field": csrf.FORM_FIELD,
        "csrf_token": _csrf(c, s),
        "totp": False,
        "passkey": False,
        "recovery": False,
        "enrol_by": "",
        "enrol_overdue": False,
        "setup": None,
        "restart_link": "",
        "restart_action": "",
        "codes": [],
    }
    base.update(kw)
    return base


def _totp_setup(t: pb.TotpEnrolment) -> dict[str, Any]:
    """The QR code as an ``<img>`` of a ``data:`` URI (identity's SVG never becomes markup of
    ours) and the secret in groups of four, for typing by hand."""
    svg = base64.b64encode(t.qr_svg.encode()).decode()
    secret = " ".join(t.secret[i : i + 4] for i in range(0, len(t.secret), 4))
    return {"qr_src": f"data:image/svg+xml;base64,{svg}", "qr_size": 200, "secret": secret}


async def _begin_totp(c: Call, s: Services) -> dict[str, Any] | None:
    """The TOTP secret to show: the pending one (identity gives a set-up begun in the last
    15 minutes again), else a new one; None when the user has a confirmed one already."""
    request = pb.BeginTotpRequest(session_id=_session_id(c))
    try:
        return _totp_setup(await s.rpc(c, s.upstream.mfa.BeginTotp, request))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            return None
        raise


def codes_page(codes: list[str], nxt: str, *, replaced: bool = False) -> Response:
    return page("mfa_codes", 200, title=CODES_TITLE, codes=codes, next=nxt, replaced=replaced)


# -- the MFA page -----------------------------------------------------------------------------


def _step_up_page(
    c: Call, s: Services, status: pb.MfaStatus, nxt: str, *, errors=(), http_status: int = 200
) -> Response:
    return page(
        "mfa",
        http_status,
        title=STEP_UP_TITLE,
        errors=errors,
        **_context(
            c,
            s,
            nxt,
            mode=policy.STEP_UP,
            totp=status.totp,
            passkey=any(not p.flagged for p in status.passkeys),
            recovery=status.recovery_codes_left > 0,
        ),
    )


def _setup_page(
    c: Call,
    s: Services,
    status: pb.MfaStatus | None,
    nxt: str,
    setup: dict[str, Any] | None,
    *,
    errors=(),
    http_status: int = 200,
) -> Response:
    """Setting up TOTP: at ``enrol`` (the MFA page: a passkey instead is offered too) or from
    a full session (the security page's set-up). ``setup`` None: nothing to show (a TOTP
    was confirmed meanwhile)."""
    enrol = status is not None and status.stage == policy.ENROL
    return page(
        "mfa",
        http_status,
        title=ENROL_TITLE if enrol else SETUP_TITLE,
        errors=errors,
        data_images=setup is not None,
        **_context(
            c,
            s,
            nxt,
            mode=policy.ENROL if enrol else "setup",
            **(_enrol_by(status) if enrol else {}),
            setup=setup,
            restart_link=_with_next(MFA_PAGE, nxt) if enrol else "",
            restart_action="" if enrol else f"{SECURITY_PAGE}/totp",
        ),
    )


async def mfa_page(c: Call, s: Services):
    """The held session's page: step-up or enrolment, as identity judges the session now;
    a full session goes on to ``next``."""
    nxt = safe_next(c.params.get("next"))
    status = await s.rpc(c, s.upstream.mfa.GetMfaStatus, _ref(c))
    if status.stage == policy.STEP_UP:
        return _step_up_page(c, s, status, nxt)
    if status.stage == policy.ENROL:
        return _setup_page(c, s, status, nxt, await _begin_totp(c, s))
    if getattr(c.principal, "stage", policy.FULL) != policy.FULL and s.sessions is not None:
        s.sessions.forget(c.tenant, [_session_id(c)])  # held no more: not back here from next
    return _redirect(nxt)


async def _again(
    c: Call, s: Services, nxt: str, errors: list[tuple[str, str]], *, http_status: int = 400
) -> Response:
    """The form that was sent, again, with what was wrong."""
    status = await s.rpc(c, s.upstream.mfa.GetMfaStatus, _ref(c))
    if status.stage == policy.STEP_UP:
        return _step_up_page(c, s, status, nxt, errors=errors, http_status=http_status)
    setup = await _begin_totp(c, s)  # the same pending secret: the app's entry stays good
    return _setup_page(c, s, status, nxt, setup, errors=errors, http_status=http_status)


def _code_step(method_name: str, field_id: str):
    """A form's code step (TOTP step-up, recovery code, TOTP confirmation)."""

    async def handler(c: Call, s: Services) -> Response:
        nxt = _form_next(c)
        code = _field(c, "code").strip()[:MAX_CODE_CHARS]
        if not code:
            return await _again(c, s, nxt, [(field_id, ENTER_CODE)])
        try:
            r = await s.rpc(
                c,
                getattr(s.upstream.mfa, method_name),
                pb.MfaCodeRequest(session_id=_session_id(c), code=code),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:  # not a code at all, said why
                return await _again(c, s, nxt, [(field_id, exc.details() or WRONG_CODE)])
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                # Not this stage's step (already full, a set-up to begin again): the page
                # shows what is to be done now.
                return _redirect(_with_next(MFA_PAGE, nxt))
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return _signed_out(c, s, nxt)
            raise
        if not r.accepted:
            if r.session_ended:
                return _signed_out(c, s, nxt)
            wrong = refusal_text(r) if r.HasField("locked_until") else WRONG_CODE
            return await _again(c, s, nxt, [(field_id, wrong)])
        done = codes_page(list(r.recovery_codes), nxt) if r.recovery_codes else _redirect(nxt)
        return _rotated(c, s, done, r)

    return handler


# -- the security page ------------------------------------------------------------------------


async def _security_page(
    c: Call, s: Services, *, status: pb.MfaStatus | None = None, errors=(), http_status=200
) -> Response:
    if status is None:
        status = await s.rpc(c, s.upstream.mfa.GetMfaStatus, _ref(c))
    who = await s.rpc(
        c,
        s.upstream.sessions.GetSession,
        sessions_pb.GetSessionRequest(session_id=_session_id(c)),
    )
    passkeys = [
        {
            "id": p.id,
            "name": p.name,
            "created": _when(p, "created_at"),
            "last_used": _when(p, "last_used_at"),
            "flagged": p.flagged,
        }
        for p in status.passkeys
    ]
    return page(
        "security",
        http_status,
        title=SECURITY_TITLE,
        errors=errors,
        email=who.email,
        required=status.required,
        totp=status.totp,
        passkeys=passkeys,
        has_factor=status.totp or any(not p.flagged for p in status.passkeys),
        recovery_codes_left=status.recovery_codes_left,
        csrf_field=csrf.FORM_FIELD,
        csrf_token=_csrf(c, s),
        codes=[],
        next=SECURITY_PAGE,
    )


async def security_page(c: Call, s: Services):
    return await _security_page(c, s)


async def _change(c: Call, s: Services, method: Any, request: Any, anchor: str) -> Response:
    """A change to the user's factors, then back to the security page; a refusal (the last
    factor while MFA is required) is shown there, at the section ``anchor``."""
    try:
        await s.rpc(c, method, request)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return await _security_page(
                c, s, errors=[(anchor, exc.details() or "That cannot be done.")], http_status=409
            )
        if exc.code() != grpc.StatusCode.NOT_FOUND:  # gone already: the page shows it
            raise
    return _redirect(SECURITY_PAGE)


async def begin_totp_setup(c: Call, s: Services):
    setup = await _begin_totp(c, s)
    if setup is None:
        return _redirect(SECURITY_PAGE)
    return _setup_page(c, s, None, SECURITY_PAGE, setup)


async def remove_totp(c: Call, s: Services):
    return await _change(c, s, s.upstream.mfa.RemoveTotp, _ref(c), "app")


async def remove_passkey(c: Call, s: Services):
    request = pb.PasskeyChange(session_id=_session_id(c), passkey_id=c.params["id"])
    return await _change(c, s, s.upstream.mfa.RemovePasskey, request, "passkeys")


async def regenerate_codes(c: Call, s: Services):
    try:
        r = await s.rpc(c, s.upstream.mfa.RegenerateRecoveryCodes, _ref(c))
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
        return await _security_page(
            c, s, errors=[("recovery", exc.details() or "")], http_status=409
        )
    return codes_page(list(r.codes), SECURITY_PAGE, replaced=True)


# -- operations -------------------------------------------------------------------------------

HTML = {"type": "string"}
PAGE_ERRORS = (400, 401, 403, 404, 409, 429, 502, 503, 504)
TAGS = ("mfa",)
# Known fields only are read; any other field is ignored (never a switch).
CODE_FORM = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "next": {"type": "string"},
        csrf.FORM_FIELD: {"type": "string"},
    },
}
CSRF_FORM = {"type": "object", "properties": {csrf.FORM_FIELD: {"type": "string"}}}
NEXT = Param("next", "query", {"type": "string", "maxLength": 2000})


def _form(
    path: str, op_id: str, summary: str, handler, auth, schema=CSRF_FORM, status=303, **kw
) -> Operation:
    """A form's target: 303 on (``status`` 200: it answers with a page of its own)."""
    return Operation(
        "POST",
        path,
        op_id,
        summary,
        handler,
        auth,
        HTML,
        status=status,
        body=form_body(schema, max_bytes=4 * 1024, max_fields=8),
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=TAGS,
        **kw,
    )


OPERATIONS = [
    Operation(
        "GET",
        MFA_PAGE,
        "mfaPage",
        "The MFA page (HTML) of a session the MFA policy holds: at step_up, a TOTP code, a "
        "recovery code or a passkey; at enrol, setting up an authenticator app (its QR code) "
        "or a passkey. A full session is sent on to `next`.",
        mfa_page,
        SESSION_DURING_MFA,
        HTML,
        params=(NEXT,),
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=TAGS,
    ),
    _form(
        "/auth/mfa/totp",
        "mfaTotpForm",
        "Step-up with the authenticator app's code (the MFA page's form); 303 to `next` with "
        "the new session, or the page again with the error.",
        _code_step("VerifyTotp", "totp-code"),
        SESSION_DURING_MFA,
        CODE_FORM,
    ),
    _form(
        "/auth/mfa/recovery",
        "mfaRecoveryForm",
        "Step-up with a recovery code (the MFA page's form); 303 to `next` with the new "
        "session, or the page again with the error.",
        _code_step("UseRecoveryCode", "recovery-code"),
        SESSION_DURING_MFA,
        CODE_FORM,
    ),
    _form(
        "/auth/mfa/totp/confirm",
        "mfaTotpConfirmForm",
        "Confirm an authenticator app's set-up with its first code; a first factor answers "
        "with the page of the ten recovery codes (shown once), else 303 to `next`; a held "
        "session gets its new cookie.",
        _code_step("ConfirmTotp", "confirm-code"),
        SESSION_DURING_MFA,
        CODE_FORM,
    ),
    Operation(
        "GET",
        SECURITY_PAGE,
        "accountSecurityPage",
        "The signed-in user's factors (HTML): authenticator app, passkeys, recovery codes.",
        security_page,
        SESSION,
        HTML,
        response_media_type="text/html",
        error_codes=PAGE_ERRORS,
        tags=TAGS,
    ),
    _form(
        f"{SECURITY_PAGE}/totp",
        "accountTotpSetupForm",
        "Begin setting up an authenticator app: the page with its QR code and secret.",
        begin_totp_setup,
        SESSION,
        status=200,
    ),
    _form(
        f"{SECURITY_PAGE}/totp/remove",
        "accountTotpRemoveForm",
        "Remove the authenticator app; 303 to the security page (which says why not, when it "
        "is the last factor and MFA is required).",
        remove_totp,
        SESSION,
    ),
    _form(
        f"{SECURITY_PAGE}/passkeys/{{id}}/remove",
        "accountPasskeyRemoveForm",
        "Remove one of the user's passkeys; 303 to the security page.",
        remove_passkey,
        SESSION,
        params=(UUID_ID,),
    ),
    _form(
        f"{SECURITY_PAGE}/recovery-codes",
        "accountRecoveryCodesForm",
        "Ten new recovery codes (the page shows them once); the earlier ones stop working.",
        regenerate_codes,
        SESSION,
        status=200,
    ),
]
