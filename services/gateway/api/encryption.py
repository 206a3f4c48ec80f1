"""The tenant's encryption key (admin): which key protects its data, and BYO-KMS (identity's
KeyService). Switching to a customer-managed key is refused below the Enterprise tier and
for a key that fails a test encrypt and decrypt; the re-wrap then runs in the background
(``state``, ``rewrapped`` of ``total``)."""

from __future__ import annotations

from typing import Any

from ontrackio.gateway.api.operation import Call, Operation, credential, json_body
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.identity.v1 import keys_pb2 as kpb

MAX_KEY_ARN_CHARS = 2048
ENCRYPTION = {
    "type": "object",
    "properties": {
        "provider": {"type": "string", "enum": ["local", "aws"]},
        "key": {
            "type": "string",
            "description": "the customer's KMS key ARN, or \"platform\" for the platform's key",
        },
        "customer_managed": {"type": "boolean"},
        "state": {"type": "string", "enum": ["ready", "rewrapping"]},
        "rewrapped": {"type": "integer", "minimum": 0},
        "total": {"type": "integer", "minimum": 0},
        "data_keys": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "service": {"type": "string"},
                    "current_version": {"type": "integer"},
                    "versions": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
        "changed_at": TIME,
        "tenant_id": {
            "type": "string",
            "description": "the encryption context's ontrack:tenant: what a customer key's "
            "policy should require (docs/keys.md)",
        },
    },
    "required": ["provider", "key", "customer_managed", "state", "rewrapped", "total"],
}
NEW_KEY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key_arn"],
    "properties": {
        "key_arn": {
            "type": ["string", "null"],
            "maxLength": MAX_KEY_ARN_CHARS,
            "description": "an AWS KMS key ARN in an allowed region; null: the platform key",
        }
    },
}


def encryption_json(k: kpb.TenantKey) -> dict[str, Any]:
    return {
        "provider": k.provider,
        # The platform's own key is not the tenant's business: named, not shown.
        "key": k.kek if k.customer_managed else "platform",
        "customer_managed": k.customer_managed,
        "state": k.state,
        "rewrapped": k.rewrapped,
        "total": k.total,
        "data_keys": [
            {
                "service": s.service,
                "current_version": s.current_version,
                "versions": list(s.versions),
            }
            for s in k.services
        ],
        "changed_at": time_json(k, "changed_at"),
        "tenant_id": k.tenant_id,
    }


async def get_encryption(c: Call, s: Services):
    return encryption_json(await s.rpc(c, s.upstream.keys.GetTenantKey, kpb.GetTenantKeyRequest()))


async def set_encryption(c: Call, s: Services):
    request = kpb.SetTenantKeyRequest(key_arn=c.body["key_arn"] or "")
    return encryption_json(await s.rpc(c, s.upstream.keys.SetTenantKey, request))


ADMIN = credential("admin")
OPERATIONS = [
    Operation(
        "GET",
        "/admin/api/v1/encryption",
        "getEncryption",
        "The key protecting the tenant's data, and the progress of a re-wrap.",
        get_encryption,
        ADMIN,
        ENCRYPTION,
        admin=True,
        tags=("admin",),
    ),
    Operation(
        "PUT",
        "/admin/api/v1/encryption",
        "setEncryption",
        "Bring your own key (Enterprise tier): the ARN of an AWS KMS key in an allowed region "
        "that grants OnTrackio encrypt, decrypt and re-encrypt (docs/keys.md). It is tested "
        "with an encrypt and a decrypt before the switch; the tenant's data keys are then "
        "re-wrapped in the background. null returns to the platform key. 409 for a "
        "Business-tier tenant or a key that fails its test; every change is audit-logged.",
        set_encryption,
        ADMIN,
        ENCRYPTION,
        body=json_body(NEW_KEY),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
