"""The gateway's routes: each decodes, calls one service over gRPC, encodes JSON.

Declared as ``Operation``s (openapi.py); ``OPERATIONS`` is the whole API. Handlers receive a
``Call`` holding the validated path/query parameters and body, the tenant and the principal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ontrackio.gateway.allowlist import InvalidCIDRs, parse_cidrs
from ontrackio.gateway.client_ip import IPAddress
from ontrackio.gateway.openapi import Operation, Param
from ontrackio.gateway.problems import problem
from ontrackio.gateway.upstream import Upstream
from ontrackio.identity import access_tokens
from ontrackio.identity.v1 import access_pb2 as apb
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.inventory.v1 import inventory_pb2 as vpb


@dataclass
class Call:
    upstream: Upstream
    tenant: str
    actor: str | None
    client_ip: IPAddress | None
    params: dict[str, Any]
    body: Any
    on_token_revoked: Any = None
    on_allowlist_changed: Any = None

    async def up(self, method, request):
        return await self.upstream.call(method, request, tenant=self.tenant, actor=self.actor)


# -- schemas ------------------------------------------------------------------------------------

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
TIME = {"type": ["string", "null"], "format": "date-time"}
ASSET = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["hardware", "software", "saas", "cloud"]},
        "owner_user_id": {"type": ["string", "null"]},
        "owner_email": {"type": ["string", "null"]},
        "owner_active": {"type": "boolean"},
        "created_at": TIME,
    },
    "required": ["id", "name", "kind", "created_at"],
}
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
TOKEN = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "scopes": {
            "type": "array",
            "items": {"type": "string", "enum": list(access_tokens.SCOPES)},
        },
        "cidrs": {"type": "array", "items": {"type": "string"}},
        "expires_at": TIME,
        "created_at": TIME,
        "created_by": {"type": "string"},
        "revoked_at": TIME,
        "last_used_at": TIME,
        "last_used_address": {"type": ["string", "null"]},
    },
    "required": ["id", "scopes", "cidrs"],
}
ALLOWLIST = {
    "type": "object",
    "properties": {
        "cidrs": {"type": "array", "items": {"type": "string"}},
        "updated_at": TIME,
        "updated_by": {"type": "string"},
    },
    "required": ["cidrs"],
}


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_page_token"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next_page_token": {"type": "string", "description": "Empty on the last page."},
        },
    }


PAGING = (
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
UUID_ID = Param("id", "path", {"type": "string", "pattern": UUID_PATTERN})


# -- encoders -----------------------------------------------------------------------------------


def _time(msg, name: str) -> str | None:
    if not msg.HasField(name):
        return None
    value: Timestamp = getattr(msg, name)
    return value.ToJsonString()


def asset_json(a: vpb.Asset) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "owner_user_id": a.owner_user_id or None,
        "owner_email": a.owner_email or None,
        "owner_active": a.owner_active,
        "created_at": _time(a, "created_at"),
    }


def user_json(u: ipb.User) -> dict[str, Any]:
    return {
        "id": u.id,
        "email": u.email,
        "display_name": u.display_name,
        "active": u.active,
        "created_at": _time(u, "created_at"),
    }


def token_json(t: apb.Token) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "scopes": list(t.scopes),
        "cidrs": list(t.cidrs),
        "expires_at": _time(t, "expires_at"),
        "created_at": _time(t, "created_at"),
        "created_by": t.created_by,
        "revoked_at": _time(t, "revoked_at"),
        "last_used_at": _time(t, "last_used_at"),
        "last_used_address": t.last_used_address or None,
    }


def allowlist_json(a: apb.Allowlist) -> dict[str, Any]:
    return {
        "cidrs": list(a.cidrs),
        "updated_at": _time(a, "updated_at"),
        "updated_by": a.updated_by,
    }


# -- handlers -----------------------------------------------------------------------------------


def _page(c: Call) -> dict:
    """The pagination query parameters, as the list RPCs take them."""
    return {"page_size": c.params.get("page_size", 0), "page_token": c.params.get("page_token", "")}


async def list_assets(c: Call):
    r = await c.up(c.upstream.assets.ListAssets, vpb.ListAssetsRequest(**_page(c)))
    return {"items": [asset_json(a) for a in r.assets], "next_page_token": r.next_page_token}


async def create_asset(c: Call):
    a = await c.up(
        c.upstream.assets.CreateAsset,
        vpb.CreateAssetRequest(
            name=c.body["name"],
            kind=c.body["kind"],
            owner_user_id=c.body.get("owner_user_id") or "",
        ),
    )
    return asset_json(a), {"Location": f"/api/v1/assets/{a.id}"}


async def get_asset(c: Call):
    return asset_json(
        await c.up(c.upstream.assets.GetAsset, vpb.GetAssetRequest(id=c.params["id"]))
    )


async def list_users(c: Call):
    r = await c.up(c.upstream.users.ListUsers, ipb.ListUsersRequest(**_page(c)))
    return {"items": [user_json(u) for u in r.users], "next_page_token": r.next_page_token}


async def get_user(c: Call):
    return user_json(await c.up(c.upstream.users.GetUser, ipb.GetUserRequest(id=c.params["id"])))


async def get_allowlist(c: Call):
    return allowlist_json(await c.up(c.upstream.access.GetAllowlist, apb.GetAllowlistRequest()))


async def set_allowlist(c: Call):
    cidrs = c.body["cidrs"]
    try:
        parse_cidrs(cidrs)
    except InvalidCIDRs as exc:  # refused here, naming each entry, before identity is asked
        return problem(
            400, detail=str(exc), extensions={"invalid_cidrs": [entry for entry, _ in exc.invalid]}
        )
    a = await c.up(
        c.upstream.access.SetAllowlist,
        apb.SetAllowlistRequest(
            cidrs=cidrs,
            caller_address=str(c.client_ip or ""),
            confirm_lockout=c.body.get("confirm_lockout", False),
        ),
    )
    if c.on_allowlist_changed:
        c.on_allowlist_changed(c.tenant)
    return allowlist_json(a)


async def list_tokens(c: Call):
    r = await c.up(
        c.upstream.access.ListTokens,
        apb.ListTokensRequest(include_revoked=c.params.get("include_revoked", False)),
    )
    return {"items": [token_json(t) for t in r.tokens]}


async def create_token(c: Call):
    r = await c.up(
        c.upstream.access.CreateToken,
        apb.CreateTokenRequest(
            name=c.body.get("name", ""),
            scopes=c.body["scopes"],
            cidrs=c.body.get("cidrs", []),
            expires_in_seconds=c.body.get("expires_in_seconds", 0),
        ),
    )
    return {"token": token_json(r.token), "secret": r.secret}, {
        "Location": f"/admin/api/v1/tokens/{r.token.id}",
        "Cache-Control": "no-store",
    }


async def revoke_token(c: Call):
    t = await c.up(c.upstream.access.RevokeToken, apb.RevokeTokenRequest(id=c.params["id"]))
    if c.on_token_revoked:
        c.on_token_revoked(c.tenant, t.id)
    return token_json(t)


# -- the API ------------------------------------------------------------------------------------

TOKEN_ID = Param("id", "path", {"type": "string", "pattern": r"^[0-9a-f]{24}$"})
ADMIN_ERRORS = (400, 401, 403, 404, 409, 429, 502, 503, 504)

OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/api/v1/assets",
        "listAssets",
        "List assets, a page at a time.",
        list_assets,
        "api:read",
        page_of(ASSET),
        params=PAGING,
        tags=("assets",),
    ),
    Operation(
        "POST",
        "/api/v1/assets",
        "createAsset",
        "Create an asset.",
        create_asset,
        "api:write",
        ASSET,
        status=201,
        tags=("assets",),
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "kind"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
                "kind": {"type": "string", "enum": ["hardware", "software", "saas", "cloud"]},
                "owner_user_id": {"type": "string", "pattern": UUID_PATTERN},
            },
        },
    ),
    Operation(
        "GET",
        "/api/v1/assets/{id}",
        "getAsset",
        "Get one asset.",
        get_asset,
        "api:read",
        ASSET,
        params=(UUID_ID,),
        tags=("assets",),
    ),
    Operation(
        "GET",
        "/api/v1/users",
        "listUsers",
        "List users, a page at a time.",
        list_users,
        "api:read",
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
        "api:read",
        USER,
        params=(UUID_ID,),
        tags=("users",),
    ),
    Operation(
        "GET",
        "/admin/api/v1/allowlist",
        "getAllowlist",
        "The admin IP allowlist (empty: no restriction).",
        get_allowlist,
        "admin",
        ALLOWLIST,
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/allowlist",
        "setAllowlist",
        "Replace the admin IP allowlist. Refused (409) if it would exclude the caller's "
        "own address unless confirm_lockout is true; every change is audit-logged.",
        set_allowlist,
        "admin",
        ALLOWLIST,
        errors=ADMIN_ERRORS,
        tags=("admin",),
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["cidrs"],
            "properties": {
                "cidrs": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {"type": "string", "maxLength": 64},
                },
                "confirm_lockout": {"type": "boolean"},
            },
        },
    ),
    Operation(
        "GET",
        "/admin/api/v1/tokens",
        "listTokens",
        "List the tenant's API tokens.",
        list_tokens,
        "admin",
        {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": TOKEN}},
        },
        params=(Param("include_revoked", "query", {"type": "boolean"}),),
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/tokens",
        "createToken",
        "Create an API token; the secret is in this response only.",
        create_token,
        "admin",
        {
            "type": "object",
            "required": ["token", "secret"],
            "properties": {"token": TOKEN, "secret": {"type": "string"}},
        },
        status=201,
        errors=ADMIN_ERRORS,
        tags=("admin",),
        body={
            "type": "object",
            "additionalProperties": False,
            "required": ["scopes"],
            "properties": {
                "name": {"type": "string", "maxLength": 200},
                "scopes": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 4,
                    "items": {"type": "string", "enum": list(access_tokens.SCOPES)},
                },
                "cidrs": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {"type": "string", "maxLength": 64},
                },
                "expires_in_seconds": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": access_tokens.MAX_EXPIRY_SECONDS,
                },
            },
        },
    ),
    Operation(
        "DELETE",
        "/admin/api/v1/tokens/{id}",
        "revokeToken",
        "Revoke a token; effective at every gateway within a second.",
        revoke_token,
        "admin",
        TOKEN,
        params=(TOKEN_ID,),
        errors=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
