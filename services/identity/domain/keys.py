"""Rules of a tenant's key: who may bring their own and which KEK wraps its data keys.
Pure: no KMS, no database. (Which wrapped keys a re-wrap visits is one SQL condition,
identity/keystore.py's _PENDING: under another KEK than the tenant's, or wrapped before a
requested re-wrap.)"""

from __future__ import annotations

from ontrackio.core.vocabulary import TIERS
from ontrackio.identity.errors import CustomerKeyRefused

BYO_TIERS = frozenset({"enterprise"})  # BYO-KMS is an Enterprise-tier feature
assert BYO_TIERS <= set(TIERS)
READY, REWRAPPING = "ready", "rewrapping"


def check_byo_allowed(slug: str, tier: str) -> None:
    """CustomerKeyRefused unless the tenant's tier offers customer-managed keys."""
    if tier not in BYO_TIERS:
        raise CustomerKeyRefused(
            f"customer-managed keys (BYO-KMS) need the Enterprise tier; tenant {slug!r} is on"
            f" the {tier.capitalize()} tier"
        )


def target_kek(key_ref: str | None, platform: str) -> str:
    """The KEK a tenant's data keys belong under: its own key, else the platform's."""
    return key_ref or platform


def state(pending: int) -> str:
    return REWRAPPING if pending else READY
