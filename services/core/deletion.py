"""When a `tenant_deleted` event may be acted on: the registry must confirm it.

The event tells a service to drop a tenant's databases, an act that cannot be undone. The
broker is not proof of who sent it (any client with publish rights on the events exchange
could forge one, and a replayed old event names a slug that may live again), so before
dropping anything a handler asks the registry afresh and acts only when the registry agrees:
the tenant is `deleting` and its grace period is over, or no live tenant has that slug any
more (identity answers NOT_FOUND for a `deleted` tenant). Pure rules: no I/O here.
"""

from __future__ import annotations

from datetime import datetime

from ontrackio.core.directory import TenantInfo

DELETED = "deleted"
DELETING = "deleting"


def refusal(
    event_tenant: str, slug: str, placement: str, info: TenantInfo | None, now: datetime
) -> str | None:
    """Why a tenant_deleted event (for `slug` on `placement`, sent as `event_tenant`'s)
    must not be acted on, given the registry's fresh answer `info` at `now` (aware); None
    when the registry confirms it. The reason is one line, safe to log."""
    if event_tenant != slug:
        return f"the event is {event_tenant!r}'s but names tenant {slug!r}"
    if info is None or info.status == DELETED:
        return None
    if info.status != DELETING:
        return f"tenant {slug!r} is {info.status}, not deleting"
    if info.delete_after is None or info.delete_after > now:
        return f"tenant {slug!r} is still in its deletion grace period"
    if info.placement != placement:
        return f"tenant {slug!r} is placed on {info.placement!r}, not {placement!r}"
    return None
