"""Tenant registry rules: what a valid tenant is and which status changes are allowed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ontrackio.catalogue import SERVICES
from ontrackio.core.tenancy import validate_slug
from ontrackio.core.vocabulary import TENANT_STATUSES, TIERS
from ontrackio.identity.errors import BadTransition, InvalidTenant

# \Z, not $: "$" would also match before a final newline ("a.example.com\n"). The last
# label is letters, or an IDN top-level domain's A-label (xn--p1ai, .рф).
DOMAIN_RE = re.compile(
    r"(?=.{4,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"([a-z]{2,63}|xn--[a-z0-9-]{0,58}[a-z0-9])\Z"
)
STATUSES = TENANT_STATUSES

# status -> statuses it may move to by an operator's command
TRANSITIONS = {
    "suspend": ({"active"}, "suspended"),
    "resume": ({"suspended"}, "active"),
    "delete": ({"provisioning", "active", "suspended"}, "deleting"),
}


@dataclass(frozen=True)
class NewTenant:
    slug: str
    name: str
    tier: str
    domains: tuple[str, ...]
    region: str
    placement: str


def normalise_domain(domain: str) -> str:
    d = domain.strip().lower().rstrip(".")
    if not DOMAIN_RE.match(d):
        raise InvalidTenant(f"invalid domain {domain!r}")
    return d


def new_tenant(
    slug: str,
    name: str,
    tier: str,
    domains: list[str],
    region: str,
    placement: str,
    *,
    allowed_regions: tuple[str, ...],
    cluster_regions: Mapping[str, str],
) -> NewTenant:
    """Validate a tenant to create; raises InvalidTenant naming the bad field.
    `cluster_regions`: each cluster a tenant may be placed on -> the region it is in (the
    tenant's region must be its placement's: its data lives there)."""
    validate_slug(slug)
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise InvalidTenant("name must be 1 to 200 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidTenant("name must not contain control characters")
    if tier not in TIERS:
        raise InvalidTenant(f"tier must be one of {', '.join(TIERS)}")
    if region not in allowed_regions:
        raise InvalidTenant(
            f"region {region!r} is not allowed; allowed: {', '.join(allowed_regions)}"
        )
    if placement not in cluster_regions:
        known = ", ".join(sorted(cluster_regions))
        raise InvalidTenant(f"unknown placement {placement!r}; known: {known}")
    if cluster_regions[placement] != region:
        raise InvalidTenant(
            f"region {region!r} is not the region of placement {placement!r} "
            f"({cluster_regions[placement]!r})"
        )
    normalised = tuple(dict.fromkeys(normalise_domain(d) for d in domains))
    return NewTenant(slug, name, tier, normalised, region, placement)


def transition(action: str, status: str) -> str:
    """The status after `action`, or BadTransition if `status` does not allow it."""
    allowed, target = TRANSITIONS[action]
    if status not in allowed:
        raise BadTransition(f"cannot {action} a tenant that is {status}")
    return target


def all_services_in(states: dict[str, str], wanted: str) -> bool:
    return all(states.get(s) == wanted for s in SERVICES)
