"""Rules of a tenant's key: who may bring their own, which KEK wraps its data keys, and
which wrapped data keys must be re-wrapped. Pure: no KMS, no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True)
class Wrapped:
    kek: str
    wrapped_at: datetime


def needs_rewrap(key: Wrapped, target: str, rewrap_after: datetime | None) -> bool:
    """A data key is re-wrapped when it is under another KEK than the tenant's, or was
    wrapped before a KEK rotation was asked for."""
    return key.kek != target or (rewrap_after is not None and key.wrapped_at < rewrap_after)


def state(pending: int) -> str:
    return REWRAPPING if pending else READY
