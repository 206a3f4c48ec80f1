"""Identity's api process: gRPC entrypoints for the tenant registry and users.

Entrypoints only decode, call the domain, encode; errors map through core.errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry, trust
from ontrackio.core.audit import origin
from ontrackio.core.grpcserver import Registration, actor_of, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime, build
from ontrackio.core.vocabulary import TIERS
from ontrackio.identity import users
from ontrackio.identity.access_api import AccessServicer
from ontrackio.identity.audit_api import AuditServicer, call_origin
from ontrackio.identity.control import Control
from ontrackio.identity.domain import tenants as rules
from ontrackio.identity.errors import InvalidTenant
from ontrackio.identity.keys_api import KeyServicer
from ontrackio.identity.keystore import KeyStore
from ontrackio.identity.mfa import api as mfa_api
from ontrackio.identity.roles import rules as role_rules
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.sessions_api import SessionServicer
from ontrackio.identity.signin import sso
from ontrackio.identity.signin_api import SignInServicer
from ontrackio.identity.sso.domains_api import CollaboratorServicer, DomainServicer
from ontrackio.identity.sso.oidc import api as oidc_api
from ontrackio.identity.sso.saml.api import SamlServicer
from ontrackio.identity.v1 import (
    access_pb2_grpc,
    audit_pb2_grpc,
    domains_pb2_grpc,
    keys_pb2_grpc,
    mfa_pb2_grpc,
    oidc_pb2_grpc,
    saml_pb2_grpc,
    sessions_pb2_grpc,
    signin_pb2_grpc,
)
from ontrackio.identity.v1 import identity_pb2 as pb
from ontrackio.identity.v1 import identity_pb2_grpc as pb_grpc

TIER_TO_PB = {t: pb.Tier.Value(f"TIER_{t.upper()}") for t in TIERS}
TIER_FROM_PB = {v: k for k, v in TIER_TO_PB.items()}
STATUS_TO_PB = {s: getattr(pb, f"TENANT_STATUS_{s.upper()}") for s in rules.STATUSES}


def tenant_pb(row) -> pb.Tenant:
    return pb.Tenant(
        id=str(row["id"]),
        slug=row["slug"],
        name=row["name"],
        tier=TIER_TO_PB[row["tier"]],
        status=STATUS_TO_PB[row["status"]],
        domains=list(row["domains"] or []),
        unverified_domains=list(row["unverified_domains"] or []),
        region=row["region"],
        placement=row["placement"],
        created_at=ts(row["created_at"]),
        delete_after=ts(row["delete_after"]),
        services=[
            pb.ServiceState(
                service=s["service"],
                state=s["state"],
                attempts=s["attempts"],
                last_error=s["last_error"],
            )
            for s in row["services"]
        ],
    )


def user_pb(row, roles: list[str]) -> pb.User:
    return pb.User(
        id=str(row["id"]),
        email=row["email"],
        display_name=row["display_name"],
        active=row["active"],
        created_at=ts(row["created_at"]),
        roles=roles,
    )


class TenantServicer(pb_grpc.TenantServiceServicer):
    def __init__(self, rt: Runtime, control: Control):
        self.rt, self.control = rt, control

    def CreateTenant(self, request, context):
        if request.tier not in TIER_FROM_PB:
            raise InvalidTenant(f"tier must be one of {', '.join(TIERS)}")
        settings = self.rt.settings
        placement = request.placement or settings.pg_control_cluster
        new = rules.new_tenant(
            request.slug,
            request.name,
            TIER_FROM_PB[request.tier],
            list(request.domains),
            # unsaid, a tenant is in its placement's region (residency checked that at start)
            request.region or settings.pg_cluster_regions.get(placement, settings.region),
            placement,
            allowed_regions=self.rt.settings.allowed_regions,
            cluster_regions=self.rt.settings.pg_cluster_regions,
        )
        return tenant_pb(self.control.create(new, actor_of(context)))

    def GetTenant(self, request, context):
        return tenant_pb(self.control.get(rules.validate_slug(request.slug)))

    def ListTenants(self, request, context):
        return pb.ListTenantsResponse(
            tenants=[tenant_pb(r) for r in self.control.list(request.include_deleted)]
        )

    def SuspendTenant(self, request, context):
        return tenant_pb(
            self.control.change_status(
                rules.validate_slug(request.slug), "suspend", actor_of(context)
            )
        )

    def ResumeTenant(self, request, context):
        return tenant_pb(
            self.control.change_status(
                rules.validate_slug(request.slug), "resume", actor_of(context)
            )
        )

    def DeleteTenant(self, request, context):
        return tenant_pb(
            self.control.change_status(
                rules.validate_slug(request.slug), "delete", actor_of(context)
            )
        )

    def ResolveDomain(self, request, context):
        return tenant_pb(self.control.by_domain(request.domain))

    def VerifyDomain(self, request, context):
        return tenant_pb(
            self.control.verify_domain(
                rules.validate_slug(request.slug), request.domain, actor_of(context)
            )
        )


class UserServicer(pb_grpc.UserServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs

    def CreateUser(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), role_rules.ADMINISTER)
            return user_pb(users.create(u, request.email, request.display_name), [])

    def GetUser(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            row = users.get(u, request.id)
            return user_pb(row, role_store.roles_of(u, row["id"]))

    def ListUsers(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            rows, token = users.list_page(u, request.page_size, request.page_token)
            out = [user_pb(r, role_store.roles_of(u, r["id"])) for r in rows]
        return pb.ListUsersResponse(users=out, next_page_token=token)

    def DeactivateUser(self, request, context):
        actor = actor_of(context)
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor, role_rules.ADMINISTER)
            row = users.deactivate(u, request.id, actor)
            return user_pb(row, role_store.roles_of(u, row["id"]))


@dataclass
class IdentityRuntime(Runtime):
    """Identity's runtime: the shared parts and the tenant registry (one per process)."""

    control: Control = field(init=False)
    keystore: KeyStore = field(init=False)


def bootstrap(service: str, settings, deployment) -> IdentityRuntime:
    """Identity's runtime: its directory reads the control database directly."""
    rt = build(
        service,
        settings,
        lambda rt: lambda slug: rt.control.lookup(slug),
        deployment,
        kind=IdentityRuntime,
        key_source=lambda rt: lambda info: rt.keystore.ring(info.slug, service),
    )
    rt.control = Control(rt)
    rt.control.ensure()
    rt.keystore = KeyStore(rt.control, rt.kms, settings.deployment)
    return rt


# Who may call each method (core/trust.py; the interceptor refuses everyone else).
CALLERS: dict[str, trust.Callers] = {
    "ontrackio.identity.v1.TenantService": {
        **trust.every(
            "CreateTenant SuspendTenant ResumeTenant DeleteTenant ListTenants VerifyDomain",
            trust.OPERATORS,
        ),
        "GetTenant": trust.TENANT_READERS,  # every service's tenant directory
        "ResolveDomain": trust.OPERATORS | trust.EDGE,  # the gateway routes hosts to tenants
    },
    "ontrackio.identity.v1.UserService": trust.every(
        "CreateUser GetUser ListUsers DeactivateUser", trust.TENANT_DATA
    ),
    "ontrackio.identity.v1.AccessService": {
        **trust.every(
            "CreateToken ListTokens RevokeToken GetAllowlist SetAllowlist ListAccessAudit",
            trust.CREDENTIALS,
        ),
        **trust.every("LookupToken TouchToken", trust.EDGE),  # checking presented tokens
    },
    "ontrackio.identity.v1.KeyService": {
        "GetDataKeys": trust.DOMAIN_SERVICES,  # each service's own keys, named by its certificate
        "GetTenantKey": trust.CREDENTIALS | trust.OPERATORS,
        "SetTenantKey": trust.CREDENTIALS,  # the admin API and the CLI, audited with an actor
        **trust.every("RotateDataKeys RewrapDataKeys", trust.CREDENTIALS),
    },
    "ontrackio.identity.v1.SessionService": {
        # the gateway checks presented cookies, and acts for the signed-in user
        **trust.every("LookupSession TouchSession GetSession EndSession", trust.EDGE),
        **trust.every(
            "ListSessions RevokeUserSessions SetUserRoles GetUserRoles GetSignInPolicy"
            " SetSignInPolicy",
            trust.CREDENTIALS,
        ),
    },
    "ontrackio.identity.v1.AuditService": {
        "ListAudit": trust.CREDENTIALS | trust.OPERATORS,  # the admin API, the CLI, operators
        "RecordRefusal": trust.EDGE,  # attempts the gateway refused
    },
    "ontrackio.identity.v1.SignInService": {
        # the sign-in and invitation pages, before any session exists
        **trust.every(
            "SignInWithPassword GetSignInOptions GetInvitation AcceptInvitation", trust.EDGE
        ),
        # the admin API and the CLI (the first owner's invitation), audited with an actor
        **trust.every(
            "CreateInvitation ListInvitations RevokeInvitation UnlockUser", trust.CREDENTIALS
        ),
    },
    "ontrackio.identity.v1.SamlService": {
        # the browser's sign-in, through the gateway only (it passes the canonical origin)
        **trust.every("GetSpMetadata StartLogin ConsumeResponse", trust.EDGE),
        # the admin API and the CLI, audited with an actor
        **trust.every("GetSamlConfig SetSamlConfig ImportSamlMetadata", trust.CREDENTIALS),
    },
    **oidc_api.CALLERS,  # sso/oidc: the login from the gateway only, configuration as tokens
    **mfa_api.CALLERS,  # mfa: a user's own steps through the gateway, facts to evidence
    # A tenant's own domains and collaborator exceptions: the admin API and the CLI, audited
    # with an actor (the approver of an exception).
    "ontrackio.identity.v1.DomainService": trust.every(
        "AddDomain ListDomains CheckDomain RemoveDomain", trust.CREDENTIALS
    ),
    "ontrackio.identity.v1.CollaboratorService": trust.every(
        "AddCollaborator ListCollaborators RemoveCollaborator CheckAdmission", trust.CREDENTIALS
    ),
}


def registrations(rt: IdentityRuntime) -> list[Registration]:
    return [
        Registration(
            pb_grpc.add_TenantServiceServicer_to_server,
            TenantServicer(rt, rt.control),
            "ontrackio.identity.v1.TenantService",
            tenant_scoped=False,
            callers=CALLERS["ontrackio.identity.v1.TenantService"],
        ),
        Registration(
            pb_grpc.add_UserServiceServicer_to_server,
            UserServicer(rt),
            "ontrackio.identity.v1.UserService",
            callers=CALLERS["ontrackio.identity.v1.UserService"],
        ),
        Registration(
            access_pb2_grpc.add_AccessServiceServicer_to_server,
            AccessServicer(rt),
            "ontrackio.identity.v1.AccessService",
            callers=CALLERS["ontrackio.identity.v1.AccessService"],
        ),
        Registration(
            keys_pb2_grpc.add_KeyServiceServicer_to_server,
            KeyServicer(rt.keystore, rt.dbs),
            "ontrackio.identity.v1.KeyService",
            callers=CALLERS["ontrackio.identity.v1.KeyService"],
        ),
        Registration(
            sessions_pb2_grpc.add_SessionServiceServicer_to_server,
            SessionServicer(rt),
            "ontrackio.identity.v1.SessionService",
            callers=CALLERS["ontrackio.identity.v1.SessionService"],
        ),
        Registration(
            audit_pb2_grpc.add_AuditServiceServicer_to_server,
            AuditServicer(rt),
            "ontrackio.identity.v1.AuditService",
            callers=CALLERS["ontrackio.identity.v1.AuditService"],
        ),
        Registration(
            signin_pb2_grpc.add_SignInServiceServicer_to_server,
            SignInServicer(rt),
            "ontrackio.identity.v1.SignInService",
            callers=CALLERS["ontrackio.identity.v1.SignInService"],
        ),
        Registration(
            saml_pb2_grpc.add_SamlServiceServicer_to_server,
            SamlServicer(rt),
            "ontrackio.identity.v1.SamlService",
            callers=CALLERS["ontrackio.identity.v1.SamlService"],
        ),
        Registration(
            oidc_pb2_grpc.add_OidcServiceServicer_to_server,
            oidc_api.OidcServicer(
                rt,
                sso.sign_in,
                rt.control.verified_domains,
            ),
            oidc_api.SERVICE,
            callers=CALLERS[oidc_api.SERVICE],
        ),
        Registration(
            mfa_pb2_grpc.add_MfaServiceServicer_to_server,
            mfa_api.MfaServicer(rt),
            mfa_api.SERVICE,
            callers=CALLERS[mfa_api.SERVICE],
        ),
        Registration(
            domains_pb2_grpc.add_DomainServiceServicer_to_server,
            DomainServicer(rt),
            "ontrackio.identity.v1.DomainService",
            callers=CALLERS["ontrackio.identity.v1.DomainService"],
        ),
        Registration(
            domains_pb2_grpc.add_CollaboratorServiceServicer_to_server,
            CollaboratorServicer(rt),
            "ontrackio.identity.v1.CollaboratorService",
            callers=CALLERS["ontrackio.identity.v1.CollaboratorService"],
        ),
    ]


def main() -> None:
    entry.api_main("identity", registrations, bootstrap, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
