"""The client address.

The socket peer, or the right-most untrusted X-Forwarded-For hop behind trusted proxies. Behind
a trusted proxy an unparsable hop is refused (400), never replaced by the proxy's own address.

Deployment contract: uvicorn must run with ``proxy_headers=False`` (and ``forwarded_allow_ips``
empty), otherwise uvicorn rewrites ``scope["client"]`` from X-Forwarded-For itself, before this
module can check who sent the header. ``server.uvicorn_kwargs`` sets both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from ipaddress import ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.core.addresses import IPAddress, IPNetwork, unmap
from ontrackio.gateway.problems import problem

__all__ = ["IPAddress", "IPNetwork", "unmap", "parse_ip", "resolve_client_ip"]

_PORT = re.compile(r"[0-9]{1,5}\Z")
# Only what HTTP itself calls optional whitespace is stripped: Unicode spaces (NBSP, NEL, which
# str.strip() would remove) make an entry garbage.
_OWS = " \t"
BAD_FORWARDED_FOR_DETAIL = (
    "X-Forwarded-For from the proxy has a hop that is not an IP address "
    "(empty, 'unknown', obfuscated or garbage); the client address cannot be determined."
)


class BadForwardedFor(ValueError):
    """A trusted proxy's X-Forwarded-For has an unparsable hop where the client should be."""


def parse_ip(value: str) -> IPAddress | None:
    """An address from a peer or X-Forwarded-For entry.

    Accepted forms: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``.

    IPv6 zone ids are dropped, IPv4-mapped IPv6 becomes IPv4. Only spaces and tabs around the
    value are ignored. Returns None for anything else; never raises.
    """
    text = value.strip(_OWS)
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else ""
        if end < 0 or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
        text = text[1:end]
        if ":" not in text:  # brackets are for IPv6 only
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    if ":" in text:  # only IPv6 has zones; "1.2.3.4%x" is garbage
        text = text.partition("%")[0]
    try:
        return unmap(ip_address(text))
    except ValueError:
        return None


def _is_port(text: str) -> bool:
    return bool(_PORT.match(text)) and int(text) <= 65535


def is_trusted(ip: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(ip in network for network in trusted)


def forwarded_for_entries(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """All X-Forwarded-For entries in order; several header lines are one list (RFC 9110 5.3)."""
    entries: list[str] = []
    for name, value in headers:
        if name.lower() == b"x-forwarded-for":
            entries.extend(part.strip(_OWS) for part in value.decode("latin-1").split(","))
    return entries


def resolve_client_ip(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client address as far as trust reaches.

    An untrusted (or unparseable) peer is the client; X-Forwarded-For is then ignored. Behind a
    trusted peer, walk the entries right to left, skipping trusted proxies; the first untrusted
    address is the client, and what is left of it (the client's own claims) is never read. If
    every hop is trusted, the left-most one is the client. None only when the peer is unknown
    (unix socket).

    Raises BadForwardedFor when the walk meets an entry that is not an address (empty,
    ``unknown``, an obfuscated ``_id``, garbage) before reaching an untrusted one: the client is
    then unknown, and answering as the last trusted hop would hand the client a proxy's address
    (fail closed).
    """
    peer_ip = parse_ip(peer) if peer else None
    if peer_ip is None or not is_trusted(peer_ip, trusted):
        return peer_ip
    client = peer_ip
    for entry in reversed(forwarded_for):
        ip = parse_ip(entry)
        if ip is None:
            raise BadForwardedFor(BAD_FORWARDED_FOR_DETAIL)
        client = ip
        if not is_trusted(ip, trusted):
            break
    return client


class ClientIPMiddleware:
    """Sets ``scope["state"]["client_ip"]`` (IPAddress | None) and ``["peer_trusted"]`` (bool).

    A trusted proxy's X-Forwarded-For that BadForwardedFor refuses is answered with a 400 problem
    (a WebSocket handshake is closed with 1008 instead).
    """

    def __init__(self, app: ASGIApp, *, trusted_proxies: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            peer_ip = parse_ip(peer) if peer else None
            state = scope.setdefault("state", {})
            state["peer_trusted"] = peer_ip is not None and is_trusted(peer_ip, self.trusted)
            entries = forwarded_for_entries(scope["headers"]) if state["peer_trusted"] else []
            try:
                state["client_ip"] = resolve_client_ip(peer, entries, self.trusted)
            except BadForwardedFor as exc:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await problem(400, detail=str(exc))(scope, receive, send)
                return
        await self.app(scope, receive, send)
