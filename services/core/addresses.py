"""Address and CIDR rules, one interpretation for every service and the gateway.

An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) is the IPv4 address a.b.c.d, and a mapped
network (``::ffff:10.0.0.0/104``) the IPv4 network (10.0.0.0/8): addresses and networks are
unmapped alike before any comparison, so no spelling slips past a list. An empty list admits
every address; an IPv4 address never matches an IPv6 network (nor the reverse). CIDR entries
must have zero host bits (``10.0.0.1/8`` is refused): in a security list a typo should stop,
not silently widen or narrow the range. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Prefix of an IPv6 network inside which the IPv4-mapped range begins (::ffff:0:0/96).
_MAPPED_PREFIX = 96


class InvalidCIDRs(ValueError):
    """One or more entries are not CIDRs; ``invalid`` lists (entry, reason) pairs."""

    def __init__(self, invalid: list[tuple[str, str]]) -> None:
        self.invalid = invalid
        super().__init__(
            "invalid CIDR entries: "
            + "; ".join(f"{entry!r} ({reason})" for entry, reason in invalid)
        )


def unmap(ip: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` as a.b.c.d; any other address unchanged."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def unmap_network(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 network (``::ffff:0:0/96`` or narrower) as its IPv4 network."""
    if isinstance(network, IPv6Network) and network.prefixlen >= _MAPPED_PREFIX:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return IPv4Network(f"{mapped}/{network.prefixlen - _MAPPED_PREFIX}")
    return network


def parse_address(text: str) -> IPAddress | None:
    """A bare address (no port, no brackets), unmapped; None for anything else. Never raises."""
    try:
        return unmap(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_cidrs(values: Iterable[object]) -> list[IPNetwork]:
    """Networks of IPv4/IPv6 CIDRs (a bare address is a /32 or /128), unmapped, in order.

    Surrounding whitespace is ignored. Raises InvalidCIDRs naming every entry that is not a
    string holding a CIDR with zero host bits.
    """
    networks: list[IPNetwork] = []
    invalid: list[tuple[str, str]] = []
    for value in values:
        entry = value.strip() if isinstance(value, str) else value
        try:
            if not isinstance(entry, str) or not entry:
                raise ValueError("empty or not a string")
            networks.append(unmap_network(ipaddress.ip_network(entry, strict=True)))
        except ValueError as exc:
            invalid.append((str(value), str(exc)))
    if invalid:
        raise InvalidCIDRs(invalid)
    return networks


def is_allowed(ip: IPAddress | None, networks: Sequence[IPNetwork]) -> bool:
    """Empty list: every address. Otherwise the (unmapped) address must be in one network;
    no address (None) is then refused."""
    if not networks:
        return True
    if ip is None:
        return False
    ip = unmap(ip)
    return any(ip in network for network in networks)


def networks_within(child: Sequence[IPNetwork], parent: Sequence[IPNetwork]) -> bool:
    """True when every address ``child`` admits is admitted by ``parent`` too (both as
    ``is_allowed`` reads them). A network may be covered by several adjacent parent networks
    together (two /25 cover a /24)."""
    parent_nets = [unmap_network(n) for n in parent]
    if not parent_nets:
        return True
    child_nets = [unmap_network(n) for n in child]
    if not child_nets:
        return False  # "any address" is wider than any list
    # Collapsed, the parent's networks are disjoint and adjacent ones merged, so a child
    # network lies inside their union exactly when it lies inside one of them.
    merged = {
        version: list(ipaddress.collapse_addresses(n for n in parent_nets if n.version == version))
        for version in (4, 6)
    }
    return all(any(net.subnet_of(p) for p in merged[net.version]) for net in child_nets)
