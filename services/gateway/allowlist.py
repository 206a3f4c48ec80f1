"""Per-tenant admin IP allowlist.

CIDR rules (core/addresses.py: ``parse_cidrs``, ``is_allowed``), the lock-out check,
``admin_refusal`` (the check itself, which the endpoint of every admin operation applies after
routing) and the conservative edge middleware that applies it, before routing, to every path
that could normalise to /admin."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.core.addresses import InvalidCIDRs, is_allowed, parse_cidrs
from ontrackio.gateway.client_ip import IPAddress, IPNetwork
from ontrackio.gateway.paths import scope_is_admin
from ontrackio.gateway.problems import ProblemResponse, problem

ADMIN_DENIED = Counter(
    "ontrack_gateway_admin_denied",
    "Requests to /admin refused by the tenant's IP allowlist.",
    ["tenant_tier"],
)
# Tiers are a short product enum from identity; anything else is folded so labels stay few.
_TIER = re.compile(r"[a-z][a-z0-9_-]{0,15}\Z")

__all__ = ["InvalidCIDRs", "is_allowed", "parse_cidrs", "would_lock_out", "admin_refusal"]

GetAllowlist = Callable[[Any], Awaitable[Sequence[IPNetwork]]]


def would_lock_out(new_cidrs: Sequence[IPNetwork], caller_ip: IPAddress | None) -> bool:
    """True when saving ``new_cidrs`` would refuse the caller's own next admin request."""
    return not is_allowed(caller_ip, new_cidrs)


def tier_label(tenant: Any) -> str:
    tier = getattr(tenant, "tier", None)
    return tier if isinstance(tier, str) and _TIER.match(tier) else "other"


ADMIN_DENIED_DETAIL = "Your address is not allowed to use the admin area."


# Told of every denial (tenant, client address, "METHOD path"), e.g. to audit it; must not block.
OnDenied = Callable[[Any, IPAddress | None, str], None]


async def admin_refusal(
    tenant: Any,
    client_ip: IPAddress | None,
    get_allowlist: GetAllowlist,
    *,
    on_denied: OnDenied | None = None,
    target: str = "",
) -> ProblemResponse | None:
    """The 403 to answer when ``client_ip`` is outside ``tenant``'s allowlist, else None.

    No tenant: refused (fail closed). Errors from ``get_allowlist`` propagate (the guard
    answers them, so an admin request is never let through on a failed look-up). A denial
    of a known tenant is passed to ``on_denied`` with ``target`` (what was attempted).
    """
    if tenant is not None and is_allowed(client_ip, await get_allowlist(tenant)):
        return None
    ADMIN_DENIED.labels(tenant_tier=tier_label(tenant)).inc()
    if on_denied is not None and tenant is not None:
        on_denied(tenant, client_ip, target)
    return problem(403, detail=ADMIN_DENIED_DETAIL)


class AdminAllowlistMiddleware:
    """Before routing: 403 problem for any path that could normalise to /admin (paths.py) when
    the client IP is outside the tenant's allowlist. Admin operations check again after routing
    (api/endpoint.py), so this layer is belt to their braces and may over-approximate.

    Needs ``state["tenant"]`` and ``state["client_ip"]`` from the earlier edge layers; without a
    tenant it refuses (fail closed). Errors from ``get_allowlist`` propagate (the guard answers).
    """

    def __init__(
        self, app: ASGIApp, *, get_allowlist: GetAllowlist, on_denied: OnDenied | None = None
    ) -> None:
        self.app = app
        self.get_allowlist = get_allowlist
        self.on_denied = on_denied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope_is_admin(scope):
            state = scope.setdefault("state", {})
            refusal = await admin_refusal(
                state.get("tenant"),
                state.get("client_ip"),
                self.get_allowlist,
                on_denied=self.on_denied,
                target=f"{scope['method']} {scope.get('path', '')}"[:200],
            )
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
