"""The gateway's audit operations: ``GET /admin/api/v1/audit`` and refusal reports.

``OPERATIONS`` declares the list operation (filters by actor, action and time range,
cursor pages, JSON or CSV by ``Accept: text/csv`` or ``?format=csv``); its handler calls
identity's ``AuditService.ListAudit``. ``RefusalReporter`` sends the attempts the gateway
refuses (admin allowlist denials, missing scopes) to ``AuditService.RecordRefusal``:
fire-and-forget, at most ``rate`` per second per tenant from one gateway worker, so a flood
of refused requests costs identity a bounded amount of work (identity limits again).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.responses import Response

from ontrackio.core import telemetry
from ontrackio.core.audit.origin import CLIENT_ADDRESS_KEY, REQUEST_ID_KEY
from ontrackio.core.grpcserver import TENANT_METADATA
from ontrackio.gateway.openapi import Operation, Param
from ontrackio.gateway.problems import problem
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.identity.v1 import audit_pb2 as pb
from ontrackio.identity.v1 import audit_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)
CSV_COLUMNS = (
    "id",
    "seq",
    "at",
    "actor",
    "actor_display",
    "action",
    "outcome",
    "target",
    "old",
    "new",
    "request_id",
    "client_address",
    "trace_id",
)
ENTRY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "description": "Append order."},
        "seq": {"type": ["integer", "null"], "description": "Chain position; null until sealed."},
        "at": {"type": "string", "format": "date-time"},
        "actor": {"type": "string", "description": "Opaque id (token:<id>, system, pv:<uuid>)."},
        "actor_display": {"type": ["string", "null"]},
        "action": {"type": "string"},
        "outcome": {"type": "string", "enum": ["done", "refused"]},
        "target": {"type": "string"},
        "old": {},
        "new": {},
        "request_id": {"type": "string"},
        "client_address": {"type": "string"},
        "trace_id": {"type": "string"},
    },
    "required": ["id", "at", "actor", "action", "outcome"],
}
PARAMS = (
    Param(
        "actor",
        "query",
        {"type": "string", "maxLength": 320},
        "Only this actor (an opaque id, or the personal value behind one).",
    ),
    Param(
        "action",
        "query",
        {"type": "string", "maxLength": 64, "pattern": r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"},
        "Only this action, e.g. token.create.",
    ),
    Param("since", "query", {"type": "string", "pattern": TIME_PATTERN}, "From (RFC 3339)."),
    Param("until", "query", {"type": "string", "pattern": TIME_PATTERN}, "Before (RFC 3339)."),
    Param("format", "query", {"type": "string", "enum": ["json", "csv"]}, "Or Accept: text/csv."),
    Param(
        "page_size",
        "query",
        {"type": "integer", "minimum": 0, "maximum": 500},
        "Items per page (default 50).",
    ),
    Param(
        "page_token",
        "query",
        {"type": "string", "maxLength": 1024},
        "next_page_token of the previous page.",
    ),
)

_stubs: dict[int, pb_grpc.AuditServiceStub] = {}


def _stub(upstream) -> pb_grpc.AuditServiceStub:
    """The AuditService stub on the upstream's identity channel (one per channel)."""
    channel = upstream.channels["identity"]
    stub = _stubs.get(id(channel))
    if stub is None:
        _stubs.clear()  # a new channel (a restarted upstream): forget the old stubs
        stub = _stubs[id(channel)] = pb_grpc.AuditServiceStub(channel)
    return stub


class BadTime(ValueError):
    pass


def parse_time(text: str | None) -> Timestamp | None:
    """An RFC 3339 time (already matched by TIME_PATTERN) as a Timestamp; BadTime if it
    names no real instant (month 13, hour 25, year 0)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        t = Timestamp()
        t.FromDatetime(when)
        return t
    except (ValueError, OverflowError):
        raise BadTime(f"{text!r} is not a valid time") from None


def wants_csv(params: dict[str, Any], accept: str) -> bool:
    """CSV when ?format=csv, or when no format is given and Accept prefers text/csv."""
    fmt = params.get("format")
    if fmt:
        return fmt == "csv"
    kinds = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return "text/csv" in kinds and "application/json" not in kinds[: kinds.index("text/csv")]


def entry_json(e: pb.AuditRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "seq": e.seq or None,
        "at": e.at.ToJsonString(),
        "actor": e.actor,
        "actor_display": e.actor_display or None,
        "action": e.action,
        "outcome": e.outcome,
        "target": e.target,
        "old": json.loads(e.old_json or "null"),
        "new": json.loads(e.new_json or "null"),
        "request_id": e.request_id,
        "client_address": e.client_address,
        "trace_id": e.trace_id,
    }


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):  # no formulas in spreadsheets
        text = "'" + text
    return text


def to_csv(items: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for item in items:
        writer.writerow([_cell(item[c]) if item[c] is not None else "" for c in CSV_COLUMNS])
    return out.getvalue()


async def list_audit(c) -> Any:
    """``GET /admin/api/v1/audit``. `c` is the gateway's ``Call``; the Accept header is
    read from ``c.headers`` when the Call carries the request's headers."""
    try:
        since, until = parse_time(c.params.get("since")), parse_time(c.params.get("until"))
    except BadTime as exc:
        return problem(400, detail=str(exc))
    request = pb.ListAuditRequest(
        actor=c.params.get("actor", ""),
        action=c.params.get("action", ""),
        since=since,
        until=until,
        page_size=c.params.get("page_size", 0),
        page_token=c.params.get("page_token", ""),
    )
    r = await c.up(_stub(c.upstream).ListAudit, request)
    items = [entry_json(e) for e in r.entries]
    headers = getattr(c, "headers", None) or {}
    if wants_csv(c.params, headers.get("accept", "")):
        extra = {"X-Next-Page-Token": r.next_page_token} if r.next_page_token else {}
        return Response(to_csv(items), media_type="text/csv; charset=utf-8", headers=extra)
    return {"items": items, "next_page_token": r.next_page_token}


ADMIN_ERRORS = (400, 401, 403, 404, 429, 502, 503, 504)
OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/admin/api/v1/audit",
        "listAudit",
        "The tenant's audit trail, newest first, a page at a time (JSON, or CSV with "
        "Accept: text/csv or ?format=csv). Refused attempts are entries too.",
        list_audit,
        "admin",
        {
            "type": "object",
            "required": ["items", "next_page_token"],
            "properties": {
                "items": {"type": "array", "items": ENTRY},
                "next_page_token": {"type": "string", "description": "Empty on the last page."},
            },
        },
        params=PARAMS,
        errors=ADMIN_ERRORS,
        tags=("admin",),
    )
]


class RefusalReporter:
    """Reports refused attempts to identity without waiting (one gateway worker's share).

    ``report`` returns at once; at most ``rate`` reports per second per tenant (burst
    ``burst``) leave this worker, the rest are counted in ``dropped``. Failures of the call
    are logged at debug level and otherwise ignored: auditing a refusal never delays or
    fails the response. Call from the worker's event loop."""

    ACTIONS = ("allowlist.denied", "scope.denied", "token.refused")

    def __init__(self, upstream, rate: float = 5.0, burst: float = 20.0) -> None:
        self.upstream = upstream
        self.limiter = TokenBucketLimiter(rate, burst, max_keys=10_000)
        self.dropped = 0
        self._tasks: set[asyncio.Task] = set()

    def report(
        self,
        tenant: str,
        action: str,
        *,
        actor: str | None = None,
        target: str = "",
        reason: str = "",
        client_address: str = "",
        request_id: str = "",
    ) -> bool:
        """Send one refusal; False when it was dropped by the rate limit."""
        if action not in self.ACTIONS:
            raise ValueError(f"unknown refusal action {action!r}")
        if not self.limiter.hit(tenant).allowed:
            self.dropped += 1
            return False
        request = pb.RecordRefusalRequest(
            action=action, actor=actor or "", target=target[:200], reason=reason[:200]
        )
        task = asyncio.get_running_loop().create_task(
            self._send(tenant, request, client_address, request_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, tenant, request, client_address: str, request_id: str) -> None:
        metadata = [
            *telemetry.inject().items(),
            (TENANT_METADATA, tenant),
            *(
                (k, v)
                for k, v in ((CLIENT_ADDRESS_KEY, client_address), (REQUEST_ID_KEY, request_id))
                if v
            ),
        ]
        try:
            await _stub(self.upstream).RecordRefusal(
                request, timeout=self.upstream.deadline, metadata=metadata
            )
        except Exception as exc:  # noqa: BLE001 - fire-and-forget: never affects the caller
            log.debug("refusal report for %s failed: %s", tenant, type(exc).__name__)

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (bounded) for reports in flight, e.g. before the worker stops."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
