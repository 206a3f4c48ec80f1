"""The tenant's audit trail (admin): ``GET /admin/api/v1/audit`` (identity's AuditService).

Filters by actor, action and time range, cursor pages, JSON or CSV (``Accept: text/csv`` or
``?format=csv``). The refused attempts the gateway reports (``gateway/refusals.py``) are
entries too.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.responses import Response

from ontrackio.gateway.accept import quality as accept_quality
from ontrackio.gateway.api.operation import Call, Operation, Param, credential
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, PAGING
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.problems import problem
from ontrackio.identity.v1 import audit_pb2 as pb

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
    *PAGING,
)


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
    """CSV when ?format=csv; JSON when ?format=json; else CSV exactly when Accept gives
    text/csv a higher quality than application/json (RFC 9110 q-values, gateway/accept.py);
    JSON on a tie, so no Accept, ``*/*`` or ``text/csv;q=0`` get JSON."""
    fmt = params.get("format")
    if fmt:
        return fmt == "csv"
    return accept_quality(accept, "text/csv") > accept_quality(accept, "application/json")


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


async def list_audit(c: Call, s: Services) -> Any:
    """``GET /admin/api/v1/audit``: a page of entries, as JSON or CSV."""
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
    r = await s.rpc(c, s.upstream.audit.ListAudit, request)
    items = [entry_json(e) for e in r.entries]
    if wants_csv(c.params, c.headers.get("accept", "")):
        extra = {"X-Next-Page-Token": r.next_page_token} if r.next_page_token else {}
        return Response(to_csv(items), media_type="text/csv; charset=utf-8", headers=extra)
    return {"items": items, "next_page_token": r.next_page_token}


LIST_RESPONSE = {
    "type": "object",
    "required": ["items", "next_page_token"],
    "properties": {
        "items": {"type": "array", "items": ENTRY},
        "next_page_token": {"type": "string", "description": "Empty on the last page."},
    },
}

OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/admin/api/v1/audit",
        "listAudit",
        "The tenant's audit trail, newest first, a page at a time (JSON, or CSV with "
        "Accept: text/csv or ?format=csv). Refused attempts are entries too.",
        list_audit,
        credential("admin"),
        LIST_RESPONSE,
        params=PARAMS,
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
        # No NextPage link: the same operation answers CSV (?format=csv), whose body a
        # client following links cannot read; next_page_token is documented in the body.
        also_answers=("text/csv",),
    ),
    Operation(
        "GET",
        "/api/v1/audit",
        "readAudit",
        "The audit trail for auditors (role auditor, or a token with audit:read): the same "
        "entries as /admin/api/v1/audit, read-only.",
        list_audit,
        credential("audit:read"),
        LIST_RESPONSE,
        params=PARAMS,
        tags=("audit",),
        also_answers=("text/csv",),
    ),
]
