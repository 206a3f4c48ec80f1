"""Identity's api process: gRPC entrypoints for the tenant registry and users.

Entrypoints only decode, call the domain, encode; errors map through core.errors.
"""

from __future__ import annotations

from ontrackio.core import entry
from ontrackio.core.grpcserver import Registration, current_tenant
from ontrackio.core.protoconv import ts
from ontrackio.core.runtime import Runtime, build
from ontrackio.identity import users
from ontrackio.identity.access_api import AccessServicer
from ontrackio.identity.control import Control
from ontrackio.identity.domain import tenants as rules
from ontrackio.identity.errors import InvalidTenant
from ontrackio.identity.v1 import access_pb2_grpc
from ontrackio.identity.v1 import identity_pb2 as pb
from ontrackio.identity.v1 import identity_pb2_grpc as pb_grpc

TIER_TO_PB = {"business": pb.TIER_BUSINESS, "enterprise": pb.TIER_ENTERPRISE}
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


def user_pb(row) -> pb.User:
    return pb.User(
        id=str(row["id"]),
        email=row["email"],
        display_name=row["display_name"],
        active=row["active"],
        created_at=ts(row["created_at"]),
    )


def _actor(context) -> str:
    return dict(context.invocation_metadata()).get("x-ontrack-actor", "operator")[:200]


class TenantServicer(pb_grpc.TenantServiceServicer):
    def __init__(self, rt: Runtime, control: Control):
        self.rt, self.control = rt, control

    def CreateTenant(self, request, context):
        if request.tier not in TIER_FROM_PB:
            raise InvalidTenant("tier must be business or enterprise")
        placements = self.rt.clusters.names
        new = rules.new_tenant(
            request.slug,
            request.name,
            TIER_FROM_PB[request.tier],
            list(request.domains),
            request.region or self.rt.settings.region,
            request.placement or self.rt.settings.pg_control_cluster,
            allowed_regions=self.rt.settings.allowed_regions,
            placements=placements,
        )
        return tenant_pb(self.control.create(new, _actor(context)))

    def GetTenant(self, request, context):
        return tenant_pb(self.control.get(rules.validate_slug(request.slug)))

    def ListTenants(self, request, context):
        return pb.ListTenantsResponse(
            tenants=[tenant_pb(r) for r in self.control.list(request.include_deleted)]
        )

    def SuspendTenant(self, request, context):
        return tenant_pb(
            self.control.change_status(
                rules.validate_slug(request.slug), "suspend", _actor(context)
            )
        )

    def ResumeTenant(self, request, context):
        return tenant_pb(
            self.control.change_status(rules.validate_slug(request.slug), "resume", _actor(context))
        )

    def DeleteTenant(self, request, context):
        return tenant_pb(
            self.control.change_status(rules.validate_slug(request.slug), "delete", _actor(context))
        )

    def ResolveDomain(self, request, context):
        return tenant_pb(self.control.by_domain(request.domain))

    def VerifyDomain(self, request, context):
        return tenant_pb(
            self.control.verify_domain(
                rules.validate_slug(request.slug), request.domain, _actor(context)
            )
        )


class UserServicer(pb_grpc.UserServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs

    def CreateUser(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            return user_pb(users.create(u, request.email, request.display_name))

    def GetUser(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            return user_pb(users.get(u, request.id))

    def ListUsers(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            rows, token = users.list_page(u, request.page_size, request.page_token)
        return pb.ListUsersResponse(users=[user_pb(r) for r in rows], next_page_token=token)

    def DeactivateUser(self, request, context):
        with self.dbs.unit_of_work(current_tenant()) as u:
            return user_pb(users.deactivate(u, request.id))


def bootstrap(service: str, settings) -> Runtime:
    """Identity's runtime: its directory reads the control database directly."""
    global control
    holder: dict[str, Control] = {}
    rt = build(service, settings, lambda rt: lambda slug: holder["control"].lookup(slug))
    holder["control"] = control = Control(rt)
    control.ensure()
    return rt


control: Control | None = None  # set by bootstrap(); one per process


def registrations(rt: Runtime) -> list[Registration]:
    return [
        Registration(
            pb_grpc.add_TenantServiceServicer_to_server,
            TenantServicer(rt, control),
            "ontrackio.identity.v1.TenantService",
            tenant_scoped=False,
        ),
        Registration(
            pb_grpc.add_UserServiceServicer_to_server,
            UserServicer(rt),
            "ontrackio.identity.v1.UserService",
        ),
        Registration(
            access_pb2_grpc.add_AccessServiceServicer_to_server,
            AccessServicer(rt),
            "ontrackio.identity.v1.AccessService",
        ),
    ]


def main() -> None:
    entry.api_main("identity", registrations, bootstrap)


if __name__ == "__main__":
    main()
