"""Identity's SignInService entrypoints: decode, call identity/signin, encode.

A refused password sign-in commits its counters and audit entry first, then answers the
one ``SignInFailed``; a refused invitation link is audited in a transaction of its own
(the refused work rolls back).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from ontrackio.core import trust
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.grpcserver import actor_of, current_caller, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime
from ontrackio.identity.audit_api import call_origin
from ontrackio.identity.errors import InvitationNotFound, SignInFailed
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.signin import invitations, password, throttle, tokens
from ontrackio.identity.signin.breach import BreachApi
from ontrackio.identity.signin.options import sign_in_options
from ontrackio.identity.signin.throttle_rules import Policy
from ontrackio.identity.v1 import signin_pb2 as pb
from ontrackio.identity.v1 import signin_pb2_grpc as pb_grpc


def invitation_pb(row) -> pb.Invitation:
    return pb.Invitation(
        id=str(row["id"]),
        email=row["email"],
        role=row["role"],
        user_id=str(row["user_id"]),
        created_at=ts(row["created_at"]),
        created_by=row["created_by"],
        expires_at=ts(row["expires_at"]),
        used_at=ts(row["used_at"]),
        revoked_at=ts(row["revoked_at"]),
        mail_state=row.get("mail_state", ""),
    )


class SignInServicer(pb_grpc.SignInServiceServicer):
    def __init__(self, rt: Runtime):
        s = rt.settings
        self.rt = rt
        self.dbs = rt.dbs
        self.key = s.token_hash_key.get_secret_value().encode()
        self.invitation_key = tokens.derive_key(self.key)
        self.address_policy = Policy(
            s.signin_address_failures,
            s.signin_address_window_seconds,
            s.signin_address_window_seconds,
        )
        self.breach_api = (
            BreachApi(s.password_breach_api_url, s.password_breach_timeout_seconds)
            if s.password_breach_api_url
            else None
        )

    def SignInWithPassword(self, request, context):
        attempt = password.Attempt(
            request.email,
            request.password,
            request.next,
            request.client_address,
            request.user_agent,
        )
        with origin.bound(call_origin(context, request.client_address)):
            with self.dbs.unit_of_work(current_tenant()) as u:
                result = password.sign_in(u, self.key, attempt, address_policy=self.address_policy)
        if isinstance(result, str):
            raise SignInFailed()
        return result

    def GetSignInOptions(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            return sign_in_options(u)

    def CreateInvitation(self, request, context):
        info = current_tenant()
        self.rt.fields.ready(info)  # key-store round trips before the transaction
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(info) as u:
            row, link = invitations.create(
                u,
                self.invitation_key,
                self.rt.fields,
                info,
                email=request.email,
                role=request.role,
                display_name=request.display_name,
                origin_url=request.origin,
                actor=actor_of(context),
            )
        # The link is a credential: only the operator's CLI (first owner) ever sees it.
        shown = link if request.return_link and current_caller() == trust.CLI else ""
        return pb.CreateInvitationResponse(invitation=invitation_pb(row), link=shown)

    def ListInvitations(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), roles.ADMINISTER)
            rows = invitations.list_all(u, request.include_closed)
        return pb.ListInvitationsResponse(invitations=[invitation_pb(r) for r in rows])

    def RevokeInvitation(self, request, context):
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), roles.ADMINISTER)
            return invitation_pb(invitations.revoke(u, request.id, actor_of(context)))

    def GetInvitation(self, request, context):
        info = current_tenant()
        with self.dbs.unit_of_work(info) as u:
            row = invitations.open_invitation(u, self.invitation_key, info.slug, request.token)
        return pb.InvitationView(
            email=row["email"], display_name=row["display_name"], expires_at=ts(row["expires_at"])
        )

    def AcceptInvitation(self, request, context):
        info = current_tenant()
        with origin.bound(call_origin(context, request.client_address)) as o:
            try:
                with self.dbs.unit_of_work(info) as u:
                    row = invitations.open_invitation(
                        u, self.invitation_key, info.slug, request.token
                    )
                # Rules and the breach API outside any transaction (the API may be slow).
                checked = password.check_password(row["email"], request.password, self.breach_api)
                with self.dbs.unit_of_work(info) as u:
                    return password.accept_invitation(
                        u,
                        self.key,
                        self.invitation_key,
                        info.slug,
                        request.token,
                        checked,
                        expected_id=uuid.UUID(str(row["id"])),
                        client_address=request.client_address,
                        user_agent=request.user_agent,
                    )
            except InvitationNotFound:
                with self.dbs.unit_of_work(info) as u:
                    audit_log.append(
                        u.conn,
                        audit_log.Entry(
                            "anonymous",
                            "invitation.refused",
                            "",
                            None,
                            {"reason": "link-not-usable"},
                            outcome="refused",
                            origin=o,
                        ),
                    )
                raise

    def UnlockUser(self, request, context):
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), roles.ADMINISTER)
            was = throttle.unlock(u, request.user_id, actor_of(context), datetime.now(UTC))
        return pb.UnlockUserResponse(was_locked=was)
