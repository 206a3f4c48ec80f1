"""API tokens (admin): list, create, revoke (identity's AccessService).

A revocation also drops the token from this worker's cache at once; the other workers learn
of it from identity's ``token_revoked`` event.
"""

from __future__ import annotations

from typing import Any

from ontrackio.gateway.api.operation import Call, Operation, Param, credential, json_body
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.identity import access_tokens
from ontrackio.identity.v1 import access_pb2 as apb

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
NEW_TOKEN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["scopes"],
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "scopes": {
            "type": "array",
            "minItems": 1,
            "maxItems": len(access_tokens.SCOPES),
            "items": {"type": "string", "enum": list(access_tokens.SCOPES)},
        },
        "cidrs": {"type": "array", "maxItems": 100, "items": {"type": "string", "maxLength": 64}},
        "expires_in_seconds": {
            "type": "integer",
            "minimum": 0,
            "maximum": access_tokens.MAX_EXPIRY_SECONDS,
        },
    },
}
TOKEN_ID = Param("id", "path", {"type": "string", "pattern": r"^[0-9a-f]{24}$"})


def token_json(t: apb.Token) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "scopes": list(t.scopes),
        "cidrs": list(t.cidrs),
        "expires_at": time_json(t, "expires_at"),
        "created_at": time_json(t, "created_at"),
        "created_by": t.created_by,
        "revoked_at": time_json(t, "revoked_at"),
        "last_used_at": time_json(t, "last_used_at"),
        "last_used_address": t.last_used_address or None,
    }


async def list_tokens(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.access.ListTokens,
        apb.ListTokensRequest(include_revoked=c.params.get("include_revoked", False)),
    )
    return {"items": [token_json(t) for t in r.tokens]}


async def create_token(c: Call, s: Services):
    r = await s.rpc(
        c,
        s.upstream.access.CreateToken,
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


async def revoke_token(c: Call, s: Services):
    t = await s.rpc(c, s.upstream.access.RevokeToken, apb.RevokeTokenRequest(id=c.params["id"]))
    s.tokens.forget(c.tenant, t.id)
    return token_json(t)


ADMIN = credential("admin")
OPERATIONS = [
    Operation(
        "GET",
        "/admin/api/v1/tokens",
        "listTokens",
        "List the tenant's API tokens.",
        list_tokens,
        ADMIN,
        {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": TOKEN}},
        },
        params=(Param("include_revoked", "query", {"type": "boolean"}),),
        admin=True,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/tokens",
        "createToken",
        "Create an API token; the secret is in this response only.",
        create_token,
        ADMIN,
        {
            "type": "object",
            "required": ["token", "secret"],
            "properties": {"token": TOKEN, "secret": {"type": "string"}},
        },
        status=201,
        body=json_body(NEW_TOKEN),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
        links={"RevokeToken": ("revokeToken", {"id": "$response.body#/token/id"})},
    ),
    Operation(
        "DELETE",
        "/admin/api/v1/tokens/{id}",
        "revokeToken",
        "Revoke a token; effective at every gateway within a second.",
        revoke_token,
        ADMIN,
        TOKEN,
        params=(TOKEN_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
