"""Named external collaborators (admin): people outside the tenant's verified domains who
may sign in by SSO until their exception expires (identity's CollaboratorService), and
the admission check that tells an admin whether an address would be let in now."""

from __future__ import annotations

from typing import Any

from ontrackio.gateway.api.audit import TIME_PATTERN, BadTime, parse_time
from ontrackio.gateway.api.operation import Call, Operation, Param, credential, json_body
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, UUID_ID, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.problems import problem
from ontrackio.identity.v1 import domains_pb2 as pb

COLLABORATOR = {
    "type": "object",
    "required": ["id", "address", "reason", "expires_at", "approver", "active"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "address": {"type": "string"},
        "reason": {"type": "string"},
        "expires_at": TIME,
        "approver": {"type": "string"},
        "created_at": TIME,
        "active": {"type": "boolean", "description": "expires_at is still ahead"},
    },
}
NEW_COLLABORATOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["address", "reason", "expires_at"],
    "properties": {
        "address": {"type": "string", "minLength": 1, "maxLength": 320},
        "reason": {"type": "string", "minLength": 1, "maxLength": 500},
        "expires_at": {
            "type": "string",
            "pattern": TIME_PATTERN,
            "description": "RFC 3339; in the future, at most 366 days ahead.",
        },
    },
}
ADMISSION_QUERY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email"],
    "properties": {"email": {"type": "string", "maxLength": 320}},
}
ADMISSION = {
    "type": "object",
    "required": ["allowed", "reason", "by_collaborator"],
    "properties": {
        "allowed": {"type": "boolean"},
        "reason": {
            "type": "string",
            "enum": [
                "domain-verified",
                "named-collaborator",
                "email-missing",
                "email-invalid",
                "domain-not-allowed",
                "collaborator-expired",
            ],
        },
        "by_collaborator": {"type": "boolean"},
        "collaborator_id": {"type": ["string", "null"]},
        "domain": {"type": ["string", "null"]},
    },
}


def collaborator_json(x: pb.Collaborator) -> dict[str, Any]:
    return {
        "id": x.id,
        "address": x.address,
        "reason": x.reason,
        "expires_at": time_json(x, "expires_at"),
        "approver": x.approver,
        "created_at": time_json(x, "created_at"),
        "active": x.active,
    }


async def list_collaborators(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.collaborators.ListCollaborators,
        pb.ListCollaboratorsRequest(include_expired=c.params.get("include_expired", False)),
    )
    return {"items": [collaborator_json(x) for x in r.collaborators]}


async def add_collaborator(c: Call, s: Services):
    try:
        expires_at = parse_time(c.body["expires_at"])
    except BadTime as exc:
        return problem(400, detail=str(exc))
    x = await s.rpc(
        c,
        s.upstream.collaborators.AddCollaborator,
        pb.AddCollaboratorRequest(
            address=c.body["address"], reason=c.body["reason"], expires_at=expires_at
        ),
    )
    return collaborator_json(x)


async def remove_collaborator(c: Call, s: Services):
    x = await s.rpc(
        c,
        s.upstream.collaborators.RemoveCollaborator,
        pb.RemoveCollaboratorRequest(id=c.params["id"]),
    )
    return collaborator_json(x)


async def check_admission(c: Call, s: Services):
    a = await s.rpc(
        c, s.upstream.collaborators.CheckAdmission, pb.CheckAdmissionRequest(email=c.body["email"])
    )
    return {
        "allowed": a.allowed,
        "reason": a.reason,
        "by_collaborator": a.by_collaborator,
        "collaborator_id": a.collaborator_id or None,
        "domain": a.domain or None,
    }


ADMIN = credential("admin")
OPERATIONS = [
    Operation(
        "GET",
        "/admin/api/v1/collaborators",
        "listCollaborators",
        "List the named external collaborators (active ones; expired too if asked).",
        list_collaborators,
        ADMIN,
        {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": COLLABORATOR}},
        },
        params=(Param("include_expired", "query", {"type": "boolean"}),),
        admin=True,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/collaborators",
        "addCollaborator",
        "Name an external collaborator (you are the approver); replaces the address's "
        "earlier exception.",
        add_collaborator,
        ADMIN,
        COLLABORATOR,
        status=201,
        body=json_body(NEW_COLLABORATOR),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "DELETE",
        "/admin/api/v1/collaborators/{id}",
        "removeCollaborator",
        "Remove an exception; it stops admitting at once.",
        remove_collaborator,
        ADMIN,
        COLLABORATOR,
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/admission",
        "checkAdmission",
        "Would an SSO sign-in with this email be admitted now (verified domain or named "
        "collaborator)? Nothing is recorded.",
        check_admission,
        ADMIN,
        ADMISSION,
        body=json_body(ADMISSION_QUERY),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
