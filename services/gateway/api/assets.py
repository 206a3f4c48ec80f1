"""Assets: list, create, get (inventory's AssetService)."""

from __future__ import annotations

from typing import Any

from ontrackio.core import vocabulary
from ontrackio.gateway.api.operation import Call, Operation, credential, json_body
from ontrackio.gateway.api.schemas import (
    ADMIN_ERRORS,
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
        "has_recovery_key": {"type": "boolean"},
    },
    "required": ["id", "name", "kind", "created_at"],
}
RECOVERY_KEY_TEXT = {
    "type": "string",
    "maxLength": 256,
    "description": "a disk-encryption recovery key (BitLocker, FileVault); stored encrypted",
}
RECOVERY_KEY = {
    "type": "object",
    "properties": {
        "asset_id": {"type": "string", "format": "uuid"},
        "recovery_key": RECOVERY_KEY_TEXT,
    },
    "required": ["asset_id", "recovery_key"],
}
NEW_RECOVERY_KEY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["recovery_key"],
    "properties": {"recovery_key": RECOVERY_KEY_TEXT},
}
NEW_ASSET = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "kind"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
        "kind": {"type": "string", "enum": KINDS},
        "owner_user_id": {"type": "string", "pattern": UUID_PATTERN},
        "recovery_key": RECOVERY_KEY_TEXT,
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
        "has_recovery_key": a.has_recovery_key,
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
            recovery_key=c.body.get("recovery_key") or "",
        ),
    )
    return asset_json(a), {"Location": f"/api/v1/assets/{a.id}"}


async def get_asset(c: Call, s: Services):
    return asset_json(
        await s.rpc(c, s.upstream.assets.GetAsset, vpb.GetAssetRequest(id=c.params["id"]))
    )


async def get_recovery_key(c: Call, s: Services):
    r = await s.rpc(c, s.upstream.assets.GetRecoveryKey, vpb.GetAssetRequest(id=c.params["id"]))
    # A secret: no cache (browser, proxy) may keep it.
    return {"asset_id": r.asset_id, "recovery_key": r.recovery_key}, {"Cache-Control": "no-store"}


async def set_recovery_key(c: Call, s: Services):
    request = vpb.SetRecoveryKeyRequest(id=c.params["id"], recovery_key=c.body["recovery_key"])
    return asset_json(await s.rpc(c, s.upstream.assets.SetRecoveryKey, request))


OPERATIONS = [
    Operation(
        "GET",
        "/api/v1/assets",
        "listAssets",
        "List assets, a page at a time.",
        list_assets,
        credential("api:read"),
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
        credential("api:write"),
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
        credential("api:read"),
        ASSET,
        params=(UUID_ID,),
        tags=("assets",),
    ),
    Operation(
        "GET",
        "/admin/api/v1/assets/{id}/recovery-key",
        "getRecoveryKey",
        "The asset's disk-encryption recovery key; every read is audit-logged. 404 when it "
        "has none; 503 (tenant-key-unavailable) while the tenant's key cannot be used.",
        get_recovery_key,
        credential("admin"),
        RECOVERY_KEY,
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin", "assets"),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/assets/{id}/recovery-key",
        "setRecoveryKey",
        'Set the asset\'s recovery key ("" removes it); stored encrypted, audit-logged.',
        set_recovery_key,
        credential("admin"),
        ASSET,
        body=json_body(NEW_RECOVERY_KEY),
        params=(UUID_ID,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin", "assets"),
    ),
]
