"""Users: list and get (identity's UserService)."""

from __future__ import annotations

from typing import Any

from ontrackio.gateway.api.operation import Call, Operation, credential
from ontrackio.gateway.api.schemas import PAGING, TIME, UUID_ID, page_of, page_request, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.identity.v1 import identity_pb2 as ipb

USER = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "email": {"type": "string"},
        "display_name": {"type": "string"},
        "active": {"type": "boolean"},
        "created_at": TIME,
    },
    "required": ["id", "email", "active"],
}


def user_json(u: ipb.User) -> dict[str, Any]:
    return {
        "id": u.id,
        "email": u.email,
        "display_name": u.display_name,
        "active": u.active,
        "created_at": time_json(u, "created_at"),
    }


async def list_users(c: Call, s: Services):
    r = await s.rpc(c, s.upstream.users.ListUsers, ipb.ListUsersRequest(**page_request(c)))
    return {"items": [user_json(u) for u in r.users], "next_page_token": r.next_page_token}


async def get_user(c: Call, s: Services):
    return user_json(
        await s.rpc(c, s.upstream.users.GetUser, ipb.GetUserRequest(id=c.params["id"]))
    )


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/users",
        "listUsers",
        "List users, a page at a time.",
        list_users,
        credential("api:read"),
        page_of(USER),
        params=PAGING,
        tags=("users",),
    ),
    Operation(
        "GET",
        "/api/v1/users/{id}",
        "getUser",
        "Get one user.",
        get_user,
        credential("api:read"),
        USER,
        params=(UUID_ID,),
        tags=("users",),
    ),
]
