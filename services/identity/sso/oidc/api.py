"""Identity's OidcService entrypoints: decode, call ``flow`` (and sign-in), encode."""

from __future__ import annotations

from typing import Any

from ontrackio.core import trust
from ontrackio.core.audit import origin
from ontrackio.core.grpcserver import actor_of, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.identity.audit_api import call_origin
from ontrackio.identity.roles import rules as role_rules
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.sso.oidc import flow
from ontrackio.identity.v1 import oidc_pb2 as pb
from ontrackio.identity.v1 import oidc_pb2_grpc as pb_grpc

SERVICE = "ontrackio.identity.v1.OidcService"
# Who may call each method (core/trust.py): the login itself only from the gateway; the
# configuration from the admin API and the CLI, audited with their actor.
CALLERS: dict[str, trust.Callers] = {
    SERVICE: {
        **trust.every("StartLogin CompleteLogin ListOidcProviders", trust.EDGE),
        **trust.every("GetOidcConfig SetOidcConfig", trust.CREDENTIALS),
    }
}


def config_pb(row: dict[str, Any]) -> pb.OidcConfig:
    return pb.OidcConfig(
        provider=row["provider"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        scopes=list(row["scopes"]),
        hosted_domains=list(row["hosted_domains"]),
        entra_tenant=row["entra_tenant"],
        enabled=row["enabled"],
        has_client_secret=row["has_client_secret"],
        updated_at=ts(row["updated_at"]),
        updated_by=row["updated_by"],
        redirect_path=f"/auth/oidc/{row['provider']}/callback",
    )


class OidcServicer(pb_grpc.OidcServiceServicer):
    """``sign_in(unit_of_work, key, ext, **kwargs)`` turns a proven identity into a session
    (identity/signin/sso.py); ``verified_domains(slug)`` names the tenant's domains."""

    def __init__(self, rt: Any, sign_in: Any, verified_domains: Any) -> None:
        self.rt = rt
        self.oidc = flow.OidcSignIn(rt)
        self.sign_in = sign_in
        self.verified_domains = verified_domains

    def StartLogin(self, request, context):
        begun = self.oidc.start(
            current_tenant(), request.provider, request.next, request.origin, request.client_address
        )
        return pb.StartOidcLoginResponse(
            authorization_url=begun.authorization_url,
            binding=begun.binding,
            expires_in_seconds=begun.expires_in_seconds,
        )

    def CompleteLogin(self, request, context):
        info = current_tenant()
        with origin.bound(call_origin(context, request.client_address)):
            ext, next_path = self.oidc.finish(
                info,
                flow.CallbackValues(
                    provider=request.provider,
                    state=request.state,
                    code=request.code,
                    error=request.error,
                    error_description=request.error_description,
                    iss=request.iss,
                    origin=request.origin,
                    binding=request.binding,
                ),
            )
            return self.sign_in(
                lambda: self.rt.dbs.unit_of_work(info),
                self.oidc.key,
                ext,
                verified_domains=self.verified_domains(info.slug),
                client_address=request.client_address,
                user_agent=request.user_agent,
                next=next_path,
            )

    def _require_admin(self, context):
        info = current_tenant()
        role_store.require_for_tenant(self.rt.dbs, info, actor_of(context), role_rules.ADMINISTER)
        return info

    def GetOidcConfig(self, request, context):
        return config_pb(self.oidc.get_config(self._require_admin(context), request.provider))

    def SetOidcConfig(self, request, context):
        info = self._require_admin(context)
        with origin.bound(call_origin(context)):
            row = self.oidc.set_config(
                info,
                request.provider,
                client_secret=request.client_secret,
                actor=actor_of(context),
                issuer=request.issuer,
                client_id=request.client_id,
                scopes=list(request.scopes),
                hosted_domains=list(request.hosted_domains),
                entra_tenant=request.entra_tenant,
                enabled=request.enabled,
            )
        return config_pb(row)

    def ListOidcProviders(self, request, context):
        return pb.ListOidcProvidersResponse(providers=self.oidc.providers(current_tenant()))
