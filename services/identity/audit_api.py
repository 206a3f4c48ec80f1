"""Identity's AuditService entrypoints: the tenant's audit trail, and refusals reported by
the gateway. Decode, call ``core/audit``, encode; errors are identity's (errors.py)."""

from __future__ import annotations

import json
from datetime import datetime

from prometheus_client import Counter

from ontrackio.core import paging
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin, refusals
from ontrackio.core.grpcserver import actor_of, current_tenant
from ontrackio.core.protoconv import time_field, ts
from ontrackio.core.runtime import Runtime
from ontrackio.identity.errors import InvalidAuditQuery
from ontrackio.identity.roles import rules as role_rules
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.v1 import audit_pb2 as pb
from ontrackio.identity.v1 import audit_pb2_grpc as pb_grpc

REFUSALS = Counter(
    "ontrack_audit_refusals",
    "Refused attempts reported to identity, by outcome (recorded, dropped: over the rate)",
    ["outcome"],
)
MAX_FILTER = 320


def call_origin(context, client_address: str = "") -> audit_log.Origin:
    """The origin of the gRPC call `context` serves (metadata from the edge)."""
    return origin.from_metadata(dict(context.invocation_metadata()), client_address)


def _time(msg, name: str) -> datetime | None:
    return time_field(msg, name, InvalidAuditQuery)


def filters_of(request: pb.ListAuditRequest) -> audit_log.Filters:
    """The validated filters of a ListAudit request."""
    for name in ("actor", "action"):
        value = getattr(request, name)
        if len(value) > MAX_FILTER or "\x00" in value:
            raise InvalidAuditQuery(f"{name} must be at most {MAX_FILTER} characters, no NUL")
    if request.action and not audit_log.ACTION_RE.match(request.action):
        raise InvalidAuditQuery("action must look like noun.verb (e.g. token.create)")
    since, until = _time(request, "since"), _time(request, "until")
    if since and until and since >= until:
        raise InvalidAuditQuery("since must be before until")
    return audit_log.Filters(request.actor, request.action, since, until)


def record_pb(r) -> pb.AuditRecord:
    return pb.AuditRecord(
        id=r["id"],
        seq=r["seq"] or 0,
        at=ts(r["at"]),
        actor=r["actor"],
        actor_display=r["actor_value"] or "",
        action=r["action"],
        outcome=r["outcome"],
        target=r["target_value"] or r["target"],
        old_json=json.dumps(r["old_value"]),
        new_json=json.dumps(r["new_value"]),
        request_id=r["request_id"],
        client_address=r["client_address"],
        trace_id=r["trace_id"],
    )


class AuditServicer(pb_grpc.AuditServiceServicer):
    def __init__(self, rt: Runtime):
        self.dbs = rt.dbs
        self.limit = refusals.TenantRateLimit(
            rt.settings.audit_refusals_per_second, rt.settings.audit_refusals_burst
        )

    def ListAudit(self, request, context):
        filters = filters_of(request)
        size = paging.page_size(request.page_size)
        before = paging.decode_position(request.page_token)
        with self.dbs.unit_of_work(current_tenant()) as u:
            role_store.require(u, actor_of(context), role_rules.AUDIT_READ)
            rows = audit_log.list_entries(u.conn, filters, size + 1, before)
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListAuditResponse(
            entries=[record_pb(r) for r in rows],
            next_page_token=paging.encode_position(rows[-1]["id"]) if more else "",
        )

    def RecordRefusal(self, request, context):
        try:
            entry = refusals.entry(
                request.action,
                request.actor,
                request.target,
                request.reason,
                call_origin(context),
            )
        except refusals.BadRefusal as exc:
            raise InvalidAuditQuery(str(exc)) from None
        tenant = current_tenant()
        if not self.limit.allow(tenant.slug):
            REFUSALS.labels("dropped").inc()
            return pb.RecordRefusalResponse(recorded=False)
        with self.dbs.unit_of_work(tenant) as u:
            audit_log.append(u.conn, entry)
        REFUSALS.labels("recorded").inc()
        return pb.RecordRefusalResponse(recorded=True)
