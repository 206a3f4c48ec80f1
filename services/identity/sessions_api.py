"""Identity's SessionService entrypoints: decode, check the acting user's role, call, encode."""

from __future__ import annotations

from ontrackio.core import paging
from ontrackio.core.audit import origin
from ontrackio.core.grpcserver import actor_of, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime
from ontrackio.identity.audit_api import call_origin
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.sessions import rules
from ontrackio.identity.sessions import store as sessions
from ontrackio.identity.signin import policy
from ontrackio.identity.v1 import sessions_pb2 as pb
from ontrackio.identity.v1 import sessions_pb2_grpc as pb_grpc


def record_pb(row, tenant: str) -> pb.SessionRecord:
    return pb.SessionRecord(
        id=row["id"],
        tenant=tenant,
        user_id=str(row["user_id"]),
        roles=row["roles"],
        secret_hash=bytes(row["secret_hash"]),
        idle_expires_at=ts(row["idle_expires_at"]),
        expires_at=ts(row["expires_at"]),
        revoked_at=ts(row["revoked_at"]),
        method=row["method"],
        mfa_source=row["mfa_source"],
        user_active=row["user_active"],
        idle_timeout_seconds=row["idle_timeout_seconds"],
        stage=row["stage"],
    )


def session_pb(row) -> pb.Session:
    return pb.Session(
        id=row["id"],
        user_id=str(row["user_id"]),
        email=row.get("email", ""),
        display_name=row.get("display_name", ""),
        roles=row["roles"],
        method=row["method"],
        mfa_source=row["mfa_source"],
        factor=row["factor"],
        created_at=ts(row["created_at"]),
        last_seen_at=ts(row["last_seen_at"]),
        idle_expires_at=ts(row["idle_expires_at"]),
        expires_at=ts(row["expires_at"]),
        client_address=row["client_address"],
        user_agent=row["user_agent"],
        revoked_at=ts(row["revoked_at"]),
        revoked_reason=row["revoked_reason"],
        idp=row["idp"],
        stage=row["stage"],
    )


def policy_pb(row) -> pb.SignInPolicy:
    return pb.SignInPolicy(
        idle_timeout_seconds=row["idle_timeout_seconds"],
        absolute_timeout_seconds=row["absolute_timeout_seconds"],
        sso_required=row["sso_required"],
        break_glass_users=row["break_glass_users"],
        jit_provisioning=row["jit_provisioning"],
        lockout_threshold=row["lockout_threshold"],
        lockout_seconds=row["lockout_seconds"],
        updated_at=ts(row["updated_at"]),
        updated_by=row["updated_by"],
        mfa_policy=row["mfa_policy"],
        mfa_grace_days=row["mfa_grace_days"],
        mfa_grace_until=ts(row["mfa_grace_until"]),
        mfa_evidence=pb.MfaEvidence(
            by_kind={k: pb.EvidenceValues(values=v) for k, v in row["mfa_evidence"].items()},
            defaults=True,
        ),
        passkey_user_verification=row["passkey_user_verification"],
    )


def _mfa_changes(request: pb.SignInPolicy) -> dict:
    """The MFA part of a SetSignInPolicy: only what the request sets ("" / unset keeps)."""
    return {
        "mfa_policy": request.mfa_policy or None,
        "mfa_grace_days": request.mfa_grace_days if request.HasField("mfa_grace_days") else None,
        "mfa_evidence": (
            {k: list(v.values) for k, v in request.mfa_evidence.by_kind.items()}
            if request.HasField("mfa_evidence")
            else None
        ),
        "passkey_user_verification": request.passkey_user_verification or None,
    }


def _own_user(context) -> str:
    """The signed-in user acting (GetSession, EndSession act on one's own session only)."""
    user_id = rules.actor_user_id(actor_of(context))
    if user_id is None:
        raise sessions.SessionNotFound("session not found")
    return user_id


class SessionServicer(pb_grpc.SessionServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs
        self.key = rt.settings.token_hash_key.get_secret_value().encode()

    def _uow(self, context):
        return self.dbs.unit_of_work(current_tenant())

    def LookupSession(self, request, context):
        with self._uow(context) as u:
            return record_pb(sessions.lookup(u, request.id), current_tenant().slug)

    def TouchSession(self, request, context):
        with self._uow(context) as u:
            return record_pb(sessions.touch(u, request.id, request.address), current_tenant().slug)

    def GetSession(self, request, context):
        user_id = _own_user(context)
        with self._uow(context) as u:
            return session_pb(sessions.get(u, request.session_id, user_id))

    def EndSession(self, request, context):
        user_id = _own_user(context)
        with origin.bound(call_origin(context)), self._uow(context) as u:
            sessions.get(u, request.session_id, user_id)  # one's own, live
            sessions.end(u, request.session_id, actor_of(context))
        return pb.EndSessionResponse()

    def ListSessions(self, request, context):
        with self._uow(context) as u:
            role_store.require(u, actor_of(context), roles.ADMINISTER)
            rows, token = sessions.list_page(
                u, request.user_id, request.page_size, request.page_token
            )
        return pb.ListSessionsResponse(
            sessions=[session_pb(r) for r in rows], next_page_token=token
        )

    def RevokeUserSessions(self, request, context):
        actor = actor_of(context)
        with origin.bound(call_origin(context)), self._uow(context) as u:
            role_store.require(u, actor, roles.ADMINISTER)
            if request.all_users:
                count = sessions.revoke_all(u, actor)
            else:
                user_id = paging.parse_id(request.user_id, "user_id")
                count = sessions.revoke_user(u, user_id, actor, rules.ENDED_ADMIN)
        return pb.RevokeSessionsResponse(revoked=count)

    def SetUserRoles(self, request, context):
        actor = actor_of(context)
        with origin.bound(call_origin(context)), self._uow(context) as u:
            role_store.require(u, actor, roles.ADMINISTER)
            before = role_store.roles_of(u, paging.parse_id(request.user_id, "user_id"))
            new = role_store.set_roles(u, request.user_id, list(request.roles), actor)
            if new != before:  # a privilege change: the user signs in afresh
                sessions.revoke_user(u, request.user_id, actor, rules.ENDED_ROLES)
        return pb.UserRoles(user_id=request.user_id, roles=new)

    def GetUserRoles(self, request, context):
        with self._uow(context) as u:
            user_id = paging.parse_id(request.user_id, "user_id")
            return pb.UserRoles(user_id=user_id, roles=role_store.roles_of(u, user_id))

    def GetSignInPolicy(self, request, context):
        with self._uow(context) as u:
            return policy_pb(policy.load(u))

    def SetSignInPolicy(self, request, context):
        actor = actor_of(context)
        changes = {
            "idle_timeout_seconds": request.idle_timeout_seconds,
            "absolute_timeout_seconds": request.absolute_timeout_seconds,
            "sso_required": request.sso_required,
            "break_glass_users": list(request.break_glass_users),
            "jit_provisioning": request.jit_provisioning,
            "lockout_threshold": request.lockout_threshold,
            "lockout_seconds": request.lockout_seconds,
            **_mfa_changes(request),
        }
        with origin.bound(call_origin(context)), self._uow(context) as u:
            role_store.require(u, actor, roles.ADMINISTER)
            before = policy.load(u)
            after = policy.update(u, changes, actor)
            if after["mfa_policy"] != before["mfa_policy"] or (
                after["mfa_evidence"] != before["mfa_evidence"]
            ):
                sessions.announce_policy_change(u)  # gateways judge live sessions again
            return policy_pb(after)
