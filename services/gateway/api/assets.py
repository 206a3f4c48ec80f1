"""Assets: list, create, get (inventory's AssetService)."""

from __future__ import annotations

from typing import Any

from ontrackio.core import vocabulary
from ontrackio.gateway.api.operation import Call, Operation, bearer, json_body
from ontrackio.gateway.api.schemas import (
    PAGING,
    TIME,
    UUID_ID,
    UUID_PATTERN,
    page_of,
    page_request,
    time_json,
)
from ontrackio.gateway.api.services import Services
from ontrackio.inventory.v1 import inventory_pb2 as vpb

KINDS = list(vocabulary.ASSET_KINDS)
ASSET = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": KINDS},
        "owner_user_id": {"type": ["string", "null"]},
        "owner_email": {"type": ["string", "null"]},
        "owner_active": {"type": "boolean"},
        "created_at": TIME,
    },
    "required": ["id", "name", "kind", "created_at"],
}
NEW_ASSET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "kind"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
        "kind": {"type": "string", "enum": KINDS},
        "owner_user_id": {"type": "string", "pattern": UUID_PATTERN},
    },
}


def asset_json(a: vpb.Asset) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind,
        "owner_user_id": a.owner_user_id or None,
        "owner_email": a.owner_email or None,
        "owner_active": a.owner_active,
        "created_at": time_json(a, "created_at"),
    }


async def list_assets(c: Call, s: Services):
    r = await s.rpc(c, s.upstream.assets.ListAssets, vpb.ListAssetsRequest(**page_request(c)))
    return {"items": [asset_json(a) for a in r.assets], "next_page_token": r.next_page_token}


async def create_asset(c: Call, s: Services):
    a = await s.rpc(
        c,
        s.upstream.assets.CreateAsset,
        vpb.CreateAssetRequest(
            name=c.body["name"],
            kind=c.body["kind"],
            owner_user_id=c.body.get("owner_user_id") or "",
        ),
    )
    return asset_json(a), {"Location": f"/api/v1/assets/{a.id}"}


async def get_asset(c: Call, s: Services):
    return asset_json(
        await s.rpc(c, s.upstream.assets.GetAsset, vpb.GetAssetRequest(id=c.params["id"]))
    )


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/assets",
        "listAssets",
        "List assets, a page at a time.",
        list_assets,
        bearer("api:read"),
        page_of(ASSET),
        params=PAGING,
        tags=("assets",),
        links={"NextPage": ("listAssets", {"page_token": "$response.body#/next_page_token"})},
    ),
    Operation(
        "POST",
        "/api/v1/assets",
        "createAsset",
        "Create an asset.",
        create_asset,
        bearer("api:write"),
        ASSET,
        status=201,
        body=json_body(NEW_ASSET),
        tags=("assets",),
        links={"GetAsset": ("getAsset", {"id": "$response.body#/id"})},
    ),
    Operation(
        "GET",
        "/api/v1/assets/{id}",
        "getAsset",
        "Get one asset.",
        get_asset,
        bearer("api:read"),
        ASSET,
        params=(UUID_ID,),
        tags=("assets",),
    ),
]
