"""Identity's DomainService and CollaboratorService entrypoints: decode, call the store
(``sso/domains.py``, ``sso/collaborators.py``) or the rule (``sso/admission.py``), encode."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ontrackio.core.audit import origin
from ontrackio.core.grpcserver import actor_of, current_tenant
from ontrackio.core.protoconv import time_field, ts
from ontrackio.identity.audit_api import call_origin
from ontrackio.identity.domain import domains as rules
from ontrackio.identity.errors import InvalidCollaborator
from ontrackio.identity.sso import admission, collaborators
from ontrackio.identity.sso.dnscheck import ChallengeLookup, ResolverConfig
from ontrackio.identity.sso.domains import DomainRegistry
from ontrackio.identity.v1 import domains_pb2 as pb
from ontrackio.identity.v1 import domains_pb2_grpc as pb_grpc


def domain_pb(row: dict[str, Any]) -> pb.Domain:
    domain = row["domain"]
    return pb.Domain(
        domain=domain,
        display_name=rules.display_name(domain),
        verified=row["verified"],
        challenge=pb.DomainChallenge(
            record_name=rules.challenge_name(domain),
            record_type=rules.CHALLENGE_TYPE,
            record_value=rules.challenge_value(row["challenge_token"]),
        ),
        added_at=ts(row["added_at"]),
        added_by=row["added_by"],
        verified_at=ts(row["verified_at"]),
        verified_by=row["verified_by"],
        last_checked_at=ts(row["last_checked_at"]),
        last_check_result=row["last_check_result"],
    )


def collaborator_pb(row: dict[str, Any], now: datetime) -> pb.Collaborator:
    return pb.Collaborator(
        id=str(row["id"]),
        address=row["address"],
        reason=row["reason"],
        expires_at=ts(row["expires_at"]),
        approver=row["approver"],
        created_at=ts(row["created_at"]),
        active=row["expires_at"] > now,
    )


def _expiry(request: pb.AddCollaboratorRequest) -> datetime | None:
    return time_field(request, "expires_at", InvalidCollaborator)


class DomainServicer(pb_grpc.DomainServiceServicer):
    def __init__(self, rt):
        self.registry = DomainRegistry(
            rt.control, rt.dbs, ChallengeLookup(ResolverConfig.from_settings(rt.settings))
        )

    def AddDomain(self, request, context):
        with origin.bound(call_origin(context)):
            return domain_pb(self.registry.add(current_tenant(), request.domain, actor_of(context)))

    def ListDomains(self, request, context):
        return pb.ListDomainsResponse(
            domains=[domain_pb(r) for r in self.registry.list(current_tenant())]
        )

    def CheckDomain(self, request, context):
        with origin.bound(call_origin(context)):
            return domain_pb(
                self.registry.check(current_tenant(), request.domain, actor_of(context))
            )

    def RemoveDomain(self, request, context):
        with origin.bound(call_origin(context)):
            return domain_pb(
                self.registry.remove(current_tenant(), request.domain, actor_of(context))
            )


class CollaboratorServicer(pb_grpc.CollaboratorServiceServicer):
    def __init__(self, rt):
        self.dbs, self.control = rt.dbs, rt.control

    def AddCollaborator(self, request, context):
        now = datetime.now(UTC)
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            row = collaborators.add(
                u,
                address=request.address,
                reason=request.reason,
                expires_at=_expiry(request),
                actor=actor_of(context),
                now=now,
            )
        return collaborator_pb(row, now)

    def ListCollaborators(self, request, context):
        now = datetime.now(UTC)
        with self.dbs.unit_of_work(current_tenant()) as u:
            rows = collaborators.list_all(u, include_expired=request.include_expired, now=now)
        return pb.ListCollaboratorsResponse(collaborators=[collaborator_pb(r, now) for r in rows])

    def RemoveCollaborator(self, request, context):
        with origin.bound(call_origin(context)), self.dbs.unit_of_work(current_tenant()) as u:
            row = collaborators.remove(u, request.id, actor_of(context))
        return collaborator_pb(row, datetime.now(UTC))

    def CheckAdmission(self, request, context):
        """The rule sign-in applies, exactly as ``signin.sso.complete`` calls it."""
        tenant = current_tenant()
        verified = self.control.get(tenant.slug)["domains"]
        with self.dbs.unit_of_work(tenant) as u:
            verdict = admission.check(u, request.email, verified, datetime.now(UTC))
        return pb.Admission(
            allowed=verdict.allowed,
            reason=verdict.reason,
            by_collaborator=verdict.by_collaborator,
            collaborator_id=verdict.collaborator_id,
            domain=verdict.domain,
        )
