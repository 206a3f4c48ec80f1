"""Tenant routing by Host.

``<slug>.<base domain>`` or a verified custom domain, 404 for anything else. A tenant that the
services refuse after the edge let it through (suspended or deleted within the edge's cache
TTL) gets the same 404: raise TenantNotServed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import unquote

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ontrackio.core.tenancy import SLUG_RE
from ontrackio.gateway.problems import problem

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[0-9]{0,5}\Z")
_ABSOLUTE_FORM = re.compile(rb"(?i)(https?)://([^/?#]*)(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class TenantInfo:
    """What the edge needs to know about the tenant a request is for."""

    tenant_id: str
    slug: str
    tier: str = "standard"
    suspended: bool = False


@dataclass(frozen=True)
class HostTarget:
    """A normalised host and, for ``<slug>.<base>``, its slug.

    The slug is None for a custom-domain candidate.
    """

    host: str
    slug: str | None


ResolveTenant = Callable[[str], Awaitable[TenantInfo | None]]

# One response object for every unknown host: byte-identical, so nothing hints at which
# tenants exist.
UNKNOWN_HOST = problem(404)


class TenantNotServed(HTTPException):
    """The request's tenant is no longer served (the services refused it: suspended, deleted).

    An HTTPException with no detail, so the app's problem handler renders exactly UNKNOWN_HOST
    (``problem(404)``); raised outside the app (e.g. from the allowlist fetch) it is rendered by
    TenantHostMiddleware itself. Either way the client cannot tell it from an unknown host.
    """

    def __init__(self) -> None:
        super().__init__(404)


def normalise_host(value: str) -> str | None:
    """Lower-case host without port or trailing dot.

    ``[v6]`` literals are compressed; None if malformed. Only ASCII is a host here (IDNs arrive
    as punycode), and only spaces and tabs around it are ignored: ``str.lower`` would turn the
    Kelvin sign into ``k`` and ``str.strip`` eats NBSP and NEL, either one making a host that a
    proxy in front saw differently. Idempotent: a result normalises to itself. Never raises.
    """
    text = value.strip(" \t")
    if not text or len(text) > 300 or not text.isascii():
        return None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else ""
        if end < 0 or (rest and not (rest.startswith(":") and _PORT.match(rest[1:]))):
            return None
        try:
            return f"[{IPv6Address(text[1:end]).compressed}]"
        except ValueError:
            return None
    host, colon, port = text.partition(":")
    if colon and not _PORT.match(port):
        return None
    host = host.lower()
    host = host.removesuffix(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        return None
    return host


def _is_ip_literal(host: str) -> bool:
    if host.startswith("["):
        return True
    try:
        IPv4Address(host)
    except ValueError:
        return False
    return True


def classify_host(host: str, base_domain: str) -> HostTarget | None:
    """Which kind of tenant host this could be; None when it cannot be any tenant's."""
    if _is_ip_literal(host) or host == base_domain or "." not in host:
        return None
    suffix = "." + base_domain
    if host.endswith(suffix):
        slug = host[: -len(suffix)]
        return HostTarget(host, slug) if SLUG_RE.match(slug) else None
    return HostTarget(host, None)


def tenant_resolver(
    base_domain: str,
    *,
    by_slug: Callable[[str], Awaitable[TenantInfo | None]],
    by_custom_domain: Callable[[str], Awaitable[TenantInfo | None]],
) -> ResolveTenant:
    """Build ``resolve_tenant(host)`` from the two identity look-ups.

    Custom domains must be verified.
    """

    async def resolve(host: str) -> TenantInfo | None:
        target = classify_host(host, base_domain)
        if target is None:
            return None
        if target.slug is not None:
            return await by_slug(target.slug)
        return await by_custom_domain(target.host)

    return resolve


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


def _split_target(raw_path: bytes) -> tuple[str | None, bytes] | None:
    """(authority or None, path) of the request target.

    None when it is not origin- or absolute-form.
    """
    if raw_path.startswith(b"/") or raw_path == b"*":
        return None, raw_path
    match = _ABSOLUTE_FORM.match(raw_path)
    if match is None:
        return None
    return match.group(2).decode("latin-1"), match.group(3) or b"/"


class TenantHostMiddleware:
    """Resolve the tenant from Host into ``scope["state"]["tenant"]`` (and ``["host"]``).

    Exactly one valid Host is required (400 otherwise, RFC 9112 3.2). X-Forwarded-Host counts only
    when ``state["peer_trusted"]`` (set by ClientIPMiddleware); its right-most value wins. An
    absolute-form target must name the same authority as Host (400 otherwise) and is rewritten to
    origin form. Unknown hosts and unknown or suspended tenants all get the same 404 body, also
    when TenantNotServed escapes from further in.
    """

    def __init__(self, app: ASGIApp, *, base_domain: str, resolve_tenant: ResolveTenant) -> None:
        self.app = app
        self.base_domain = base_domain
        self.resolve_tenant = resolve_tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hosts = _header_values(scope["headers"], b"host")
        if len(hosts) != 1:
            await problem(400, detail="Exactly one Host header is required.")(scope, receive, send)
            return
        host = normalise_host(hosts[0])
        target = _split_target(
            scope.get("raw_path") or scope["path"].encode("utf-8", "surrogatepass")
        )
        if host is None or target is None:
            await problem(400, detail="Invalid Host header or request target.")(
                scope, receive, send
            )
            return
        authority, path = target
        if authority is not None:
            if normalise_host(authority) != host:
                await problem(400, detail="Request target and Host disagree.")(scope, receive, send)
                return
            scope = {**scope, "raw_path": path, "path": unquote(path.decode("latin-1"))}
        state = scope.setdefault("state", {})
        if state.get("peer_trusted"):
            forwarded = [
                v.strip()
                for h in _header_values(scope["headers"], b"x-forwarded-host")
                for v in h.split(",")
            ]
            if forwarded and forwarded[-1]:
                host = normalise_host(forwarded[-1])
                if host is None:
                    await problem(400, detail="Invalid forwarded host.")(scope, receive, send)
                    return
        tenant = None
        if classify_host(host, self.base_domain) is not None:
            tenant = await self.resolve_tenant(host)
        if tenant is None or tenant.suspended:
            await UNKNOWN_HOST(scope, receive, send)
            return
        state["tenant"] = tenant
        state["host"] = host
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except TenantNotServed:
            if started:
                raise
            await UNKNOWN_HOST(scope, receive, send)
