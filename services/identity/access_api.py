"""Identity's AccessService entrypoints: decode, call ``access``, encode."""

from __future__ import annotations

import json

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.grpcserver import actor_of, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime
from ontrackio.identity import access
from ontrackio.identity.audit_api import call_origin
from ontrackio.identity.roles import rules as role_rules
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.v1 import access_pb2 as pb
from ontrackio.identity.v1 import access_pb2_grpc as pb_grpc


def token_pb(row) -> pb.Token:
    return pb.Token(
        id=row["id"],
        name=row["name"],
        scopes=list(row["scopes"]),
        cidrs=list(row["cidrs"]),
        expires_at=ts(row["expires_at"]),
        created_at=ts(row["created_at"]),
        created_by=row["created_by"],
        revoked_at=ts(row["revoked_at"]),
        last_used_at=ts(row["last_used_at"]),
        last_used_address=row["last_used_address"],
    )


def allowlist_pb(row) -> pb.Allowlist:
    return pb.Allowlist(
        cidrs=list(row["cidrs"]), updated_at=ts(row["updated_at"]), updated_by=row["updated_by"]
    )


class AccessServicer(pb_grpc.AccessServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs
        self.key = rt.settings.token_hash_key.get_secret_value().encode()

    def CreateToken(self, request, context):
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), role_rules.ADMINISTER)
            row, bearer = access.create_token(
                u,
                self.key,
                name=request.name,
                scopes=list(request.scopes),
                cidrs=list(request.cidrs),
                expires_in_seconds=request.expires_in_seconds,
                actor=actor_of(context),
            )
        return pb.CreateTokenResponse(token=token_pb(row), secret=bearer)

    def ListTokens(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), role_rules.ADMINISTER)
            rows = access.list_tokens(u, request.include_revoked)
        return pb.ListTokensResponse(tokens=[token_pb(r) for r in rows])

    def RevokeToken(self, request, context):
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), role_rules.ADMINISTER)
            return token_pb(access.revoke_token(u, request.id, actor_of(context)))

    def LookupToken(self, request, context):
        tenant = current_tenant()
        with self.dbs.unit_of_work(tenant) as u:
            row = access.lookup_token(u, request.id)
        return pb.TokenRecord(
            token=token_pb(row), tenant=tenant.slug, secret_hash=bytes(row["secret_hash"])
        )

    def TouchToken(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            access.touch_token(u, request.id, request.address)
        return pb.TouchTokenResponse()

    def GetAllowlist(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), role_rules.ADMINISTER)
            return allowlist_pb(access.get_allowlist(u))

    def SetAllowlist(self, request, context):
        with origin.bound(call_origin(context, request.caller_address)) as o:
            try:
                with self.dbs.unit_of_work(current_tenant()) as u:
                    role_store.require(u, actor_of(context), role_rules.ADMINISTER)
                    return allowlist_pb(
                        access.set_allowlist(
                            u,
                            list(request.cidrs),
                            actor=actor_of(context),
                            caller_address=request.caller_address,
                            confirm_lockout=request.confirm_lockout,
                        )
                    )
            except access.WouldLockOut:
                # The refused change rolled back; the refusal is recorded on its own.
                with self.dbs.unit_of_work(current_tenant()) as u:
                    audit_log.append(
                        u.conn,
                        audit_log.Entry(
                            actor_of(context),
                            "allowlist.lockout_refused",
                            "allowlist",
                            None,
                            {"cidrs": list(request.cidrs)[:100]},
                            outcome="refused",
                            origin=o,
                        ),
                    )
                raise

    def ListAccessAudit(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), role_rules.ADMINISTER)
            rows = access.list_audit(u, request.limit)
        return pb.ListAccessAuditResponse(
            entries=[
                pb.AuditEntry(
                    at=ts(r["at"]),
                    actor=r["actor"],
                    action=r["action"],
                    address=r["address"],
                    old_json=json.dumps(r["old_value"]),
                    new_json=json.dumps(r["new_value"]),
                )
                for r in rows
            ]
        )
