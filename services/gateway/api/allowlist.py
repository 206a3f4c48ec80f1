"""The admin IP allowlist (admin): get and replace (identity's AccessService).

Entries are checked here first, each bad one named, before identity is asked; a change also
drops this worker's cached list at once (the others learn of it from ``allowlist_changed``).
"""

from __future__ import annotations

from typing import Any

from ontrackio.gateway.allowlist import InvalidCIDRs, parse_cidrs
from ontrackio.gateway.api.operation import Call, Operation, credential, json_body
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.problems import problem
from ontrackio.identity.v1 import access_pb2 as apb

ALLOWLIST = {
    "type": "object",
    "properties": {
        "cidrs": {"type": "array", "items": {"type": "string"}},
        "updated_at": TIME,
        "updated_by": {"type": "string"},
    },
    "required": ["cidrs"],
}
NEW_ALLOWLIST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["cidrs"],
    "properties": {
        "cidrs": {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 64}},
        "confirm_lockout": {"type": "boolean"},
    },
}


def allowlist_json(a: apb.Allowlist) -> dict[str, Any]:
    return {
        "cidrs": list(a.cidrs),
        "updated_at": time_json(a, "updated_at"),
        "updated_by": a.updated_by,
    }


async def get_allowlist(c: Call, s: Services):
    return allowlist_json(await s.rpc(c, s.upstream.access.GetAllowlist, apb.GetAllowlistRequest()))


async def set_allowlist(c: Call, s: Services):
    cidrs = c.body["cidrs"]
    try:
        parse_cidrs(cidrs)
    except InvalidCIDRs as exc:
        return problem(
            400, detail=str(exc), extensions={"invalid_cidrs": [entry for entry, _ in exc.invalid]}
        )
    a = await s.rpc(
        c,
        s.upstream.access.SetAllowlist,
        apb.SetAllowlistRequest(
            cidrs=cidrs,
            caller_address=str(c.client_ip or ""),
            confirm_lockout=c.body.get("confirm_lockout", False),
        ),
    )
    s.allowlists.forget(c.tenant)
    return allowlist_json(a)


ADMIN = credential("admin")
OPERATIONS = [
    Operation(
        "GET",
        "/admin/api/v1/allowlist",
        "getAllowlist",
        "The admin IP allowlist (empty: no restriction).",
        get_allowlist,
        ADMIN,
        ALLOWLIST,
        admin=True,
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/allowlist",
        "setAllowlist",
        "Replace the admin IP allowlist. Refused (409) if it would exclude the caller's "
        "own address unless confirm_lockout is true; every change is audit-logged.",
        set_allowlist,
        ADMIN,
        ALLOWLIST,
        body=json_body(NEW_ALLOWLIST),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
