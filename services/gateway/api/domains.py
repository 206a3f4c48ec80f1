"""A tenant's verified domains (admin): add one and get its DNS challenge, list, verify,
remove (identity's DomainService). Only a verified domain routes to the tenant and counts
as allowed for SSO sign-in; the DNS check itself is identity's (docs/domains.md)."""

from __future__ import annotations

from typing import Any

from ontrackio.gateway.api.operation import Call, Operation, Param, credential, json_body
from ontrackio.gateway.api.schemas import ADMIN_ERRORS, TIME, time_json
from ontrackio.gateway.api.services import Services
from ontrackio.identity.v1 import domains_pb2 as pb

# The challenge checks answer 422 (record missing or wrong) and 503 (DNS unavailable).
CHECK_ERRORS = tuple(sorted({*ADMIN_ERRORS, 422}))
CHALLENGE = {
    "type": "object",
    "required": ["record_name", "record_type", "record_value"],
    "properties": {
        "record_name": {"type": "string", "description": "_ontrack-challenge.<domain>"},
        "record_type": {"type": "string", "enum": ["TXT"]},
        "record_value": {"type": "string", "description": "ontrack-verify=<token>"},
    },
}
DOMAIN = {
    "type": "object",
    "required": ["domain", "verified", "challenge"],
    "properties": {
        "domain": {"type": "string", "description": "A-labels, lower case"},
        "display_name": {"type": "string", "description": "IDN labels in Unicode"},
        "verified": {"type": "boolean"},
        "challenge": CHALLENGE,
        "added_at": TIME,
        "added_by": {"type": "string"},
        "verified_at": TIME,
        "verified_by": {"type": "string"},
        "last_checked_at": TIME,
        "last_check_result": {"type": "string"},
    },
}
NEW_DOMAIN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["domain"],
    "properties": {
        "domain": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1024,
            "description": "Unicode or A-labels, any case, an optional trailing dot.",
        }
    },
}
DOMAIN_NAME = Param(
    "domain",
    "path",
    {"type": "string", "minLength": 1, "maxLength": 254, "pattern": r"^[A-Za-z0-9.-]+$"},
    "The domain as listed (A-labels).",
)


def domain_json(d: pb.Domain) -> dict[str, Any]:
    return {
        "domain": d.domain,
        "display_name": d.display_name,
        "verified": d.verified,
        "challenge": {
            "record_name": d.challenge.record_name,
            "record_type": d.challenge.record_type,
            "record_value": d.challenge.record_value,
        },
        "added_at": time_json(d, "added_at"),
        "added_by": d.added_by,
        "verified_at": time_json(d, "verified_at"),
        "verified_by": d.verified_by,
        "last_checked_at": time_json(d, "last_checked_at"),
        "last_check_result": d.last_check_result,
    }


async def list_domains(c: Call, s: Services):
    r = await s.rpc(c, s.upstream.domains.ListDomains, pb.ListDomainsRequest())
    return {"items": [domain_json(d) for d in r.domains]}


async def add_domain(c: Call, s: Services):
    d = await s.rpc(c, s.upstream.domains.AddDomain, pb.AddDomainRequest(domain=c.body["domain"]))
    return domain_json(d)


async def verify_domain(c: Call, s: Services):
    d = await s.rpc(
        c, s.upstream.domains.CheckDomain, pb.CheckDomainRequest(domain=c.params["domain"])
    )
    return domain_json(d)


async def remove_domain(c: Call, s: Services):
    d = await s.rpc(
        c, s.upstream.domains.RemoveDomain, pb.RemoveDomainRequest(domain=c.params["domain"])
    )
    return domain_json(d)


ADMIN = credential("admin")
OPERATIONS = [
    Operation(
        "GET",
        "/admin/api/v1/domains",
        "listDomains",
        "List the tenant's domains, verified and pending (with the TXT record to publish).",
        list_domains,
        ADMIN,
        {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": DOMAIN}},
        },
        admin=True,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/domains",
        "addDomain",
        "Add a domain; publish the TXT record of its challenge, then verify it.",
        add_domain,
        ADMIN,
        DOMAIN,
        status=201,
        body=json_body(NEW_DOMAIN),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "POST",
        "/admin/api/v1/domains/{domain}/verify",
        "verifyDomain",
        "Look the domain's TXT challenge up in DNS now; verified when it matches.",
        verify_domain,
        ADMIN,
        DOMAIN,
        params=(DOMAIN_NAME,),
        admin=True,
        error_codes=CHECK_ERRORS,
        tags=("admin",),
    ),
    Operation(
        "DELETE",
        "/admin/api/v1/domains/{domain}",
        "removeDomain",
        "Remove a domain: it stops routing and counting as allowed for sign-in.",
        remove_domain,
        ADMIN,
        DOMAIN,
        params=(DOMAIN_NAME,),
        admin=True,
        error_codes=ADMIN_ERRORS,
        tags=("admin",),
    ),
]
