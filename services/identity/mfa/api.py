"""Identity's MfaService entrypoints: decode, call ``flow`` (or ``facts``), encode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ontrackio.core import trust
from ontrackio.core.audit import origin
from ontrackio.core.errors import InvalidArgument
from ontrackio.core.grpcserver import actor_of, current_tenant
from ontrackio.core.protoconv import time_field, ts
from ontrackio.identity.audit_api import call_origin
from ontrackio.identity.mfa import facts, flow
from ontrackio.identity.sessions import rules as session_rules
from ontrackio.identity.sessions import store as sessions
from ontrackio.identity.v1 import mfa_pb2 as pb
from ontrackio.identity.v1 import mfa_pb2_grpc as pb_grpc

SERVICE = "ontrackio.identity.v1.MfaService"
# Who may call each method (core/trust.py): a user's own steps and the passwordless sign-in
# come through the gateway; the facts go to evidence (and operators).
CALLERS: dict[str, trust.Callers] = {
    SERVICE: {
        **trust.every(
            "GetMfaStatus BeginTotp ConfirmTotp VerifyTotp UseRecoveryCode"
            " RegenerateRecoveryCodes RemoveTotp BeginPasskeyRegistration"
            " FinishPasskeyRegistration BeginPasskeyStepUp FinishPasskeyStepUp RenamePasskey"
            " RemovePasskey BeginPasskeySignIn FinishPasskeySignIn ResetUserMfa",
            trust.EDGE,
        ),
        "GetMfaFacts": frozenset({"evidence"}) | trust.OPERATORS | trust.EDGE,
    }
}


def _user(context) -> str:
    """The signed-in user acting (every step acts on one's own session only)."""
    user_id = session_rules.actor_user_id(actor_of(context))
    if user_id is None:
        raise sessions.SessionNotFound("session not found")
    return user_id


def status_pb(s: dict[str, Any]) -> pb.MfaStatus:
    return pb.MfaStatus(
        stage=s["stage"],
        required=s["required"],
        totp=s["totp"],
        totp_pending=s["totp_pending"],
        passkeys=[
            pb.Passkey(
                id=str(k["id"]),
                name=k["name"],
                created_at=ts(k["created_at"]),
                last_used_at=ts(k["last_used_at"]),
                flagged=k["flagged_at"] is not None,
                backed_up=k["backed_up"],
                aaguid=k["aaguid"],
            )
            for k in s["passkeys"]
        ],
        recovery_codes_left=s["recovery_codes_left"],
        policy=s["policy"],
        enrol_by=ts(s["enrol_by"]),
        mfa_source=s["mfa_source"],
        factor=s["factor"],
    )


def step_pb(r: flow.StepResult) -> pb.MfaStepResult:
    return pb.MfaStepResult(
        accepted=r.accepted,
        grant=r.grant,
        recovery_codes=r.recovery_codes,
        recovery_codes_left=r.recovery_codes_left,
        session_ended=r.session_ended,
        stage=r.stage,
        locked_until=ts(r.locked_until),
    )


class MfaServicer(pb_grpc.MfaServiceServicer):
    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.flow = flow.MfaFlow(rt)

    def _own(self, step, request, context, *args, **kwargs):
        """``step`` of ``flow`` on the caller's own session (tenant, session id, user), with
        the call's origin bound for the audit entries it writes."""
        with origin.bound(call_origin(context)):
            return step(current_tenant(), request.session_id, _user(context), *args, **kwargs)

    def GetMfaStatus(self, request, context):
        return status_pb(self._own(self.flow.status, request, context))

    def BeginTotp(self, request, context):
        got = self._own(self.flow.begin_totp, request, context, fresh=request.fresh)
        return pb.TotpEnrolment(**got)

    def ConfirmTotp(self, request, context):
        return step_pb(self._own(self.flow.confirm_totp, request, context, request.code))

    def VerifyTotp(self, request, context):
        return step_pb(self._own(self.flow.verify_totp, request, context, request.code))

    def UseRecoveryCode(self, request, context):
        return step_pb(self._own(self.flow.use_recovery_code, request, context, request.code))

    def RegenerateRecoveryCodes(self, request, context):
        codes = self._own(self.flow.regenerate_recovery_codes, request, context)
        return pb.RecoveryCodes(codes=codes)

    def RemoveTotp(self, request, context):
        return status_pb(self._own(self.flow.remove_totp, request, context))

    def _options(self, step, request, context) -> pb.PasskeyOptions:
        options, challenge_id = self._own(step, request, context, request.origin)
        return pb.PasskeyOptions(options_json=options, challenge_id=challenge_id)

    def BeginPasskeyRegistration(self, request, context):
        return self._options(self.flow.begin_passkey_registration, request, context)

    def FinishPasskeyRegistration(self, request, context):
        step = self.flow.finish_passkey_registration
        args = (request.origin, request.challenge_id, request.response_json, request.name)
        return step_pb(self._own(step, request, context, *args))

    def BeginPasskeyStepUp(self, request, context):
        return self._options(self.flow.begin_passkey_step_up, request, context)

    def FinishPasskeyStepUp(self, request, context):
        step = self.flow.finish_passkey_step_up
        args = (request.origin, request.challenge_id, request.response_json)
        return step_pb(self._own(step, request, context, *args))

    def RenamePasskey(self, request, context):
        step = self.flow.rename_passkey
        return status_pb(self._own(step, request, context, request.passkey_id, request.name))

    def RemovePasskey(self, request, context):
        step = self.flow.remove_passkey
        return status_pb(self._own(step, request, context, request.passkey_id))

    def BeginPasskeySignIn(self, request, context):
        with origin.bound(call_origin(context, request.client_address)):
            options, challenge_id = self.flow.begin_passkey_sign_in(
                current_tenant(), request.origin, request.binding, request.client_address
            )
        return pb.PasskeyOptions(options_json=options, challenge_id=challenge_id)

    def FinishPasskeySignIn(self, request, context):
        with origin.bound(call_origin(context, request.client_address)):
            return self.flow.finish_passkey_sign_in(
                current_tenant(),
                origin_url=request.origin,
                binding=request.binding,
                challenge_id=request.challenge_id,
                response_json=request.response_json,
                client_address=request.client_address,
                user_agent=request.user_agent,
                next=request.next or "/",
            )

    def ResetUserMfa(self, request, context):
        with origin.bound(call_origin(context)):
            counts = self.flow.reset_user(
                current_tenant(), actor_of(context), request.session_id, request.user_id
            )
        return pb.ResetUserMfaResponse(**counts)

    def GetMfaFacts(self, request, context):
        as_of = time_field(request, "as_of", InvalidArgument) or datetime.now(UTC)
        with self.rt.dbs.unit_of_work(current_tenant()) as u:
            f = facts.facts(u, as_of)
        return pb.MfaFacts(
            as_of=ts(as_of),
            policy=f["policy"],
            active_users=f["active_users"],
            users_enrolled=f["users_enrolled"],
            admins=f["admins"],
            admins_enrolled=f["admins_enrolled"],
            users_with_passkey=f["users_with_passkey"],
            factors=f["factors"],
            passkey_factors=f["passkey_factors"],
            sign_ins_by_mfa_source=f["sign_ins_by_mfa_source"],
            sign_ins=f["sign_ins"],
        )
