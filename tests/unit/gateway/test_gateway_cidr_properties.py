"""Properties of allowlist CIDR parsing: only InvalidCIDRs, naming exactly the entries that
``ipaddress`` (strict) refuses; canonical and idempotent results; mapped ranges unmapped."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.gateway.allowlist import InvalidCIDRs, parse_cidrs
from tests.unit.gateway.strategies import PROPERTY, any_text


@st.composite
def networks(draw):
    ip = draw(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
    prefix = draw(st.integers(0, ip.max_prefixlen))
    return ip_network((ip, prefix), strict=False)


def _reference(entry: str):
    try:
        net = ip_network(entry.strip(), strict=True)
    except ValueError:
        return None
    if isinstance(net, IPv6Network) and net.prefixlen >= 96 and net.network_address.ipv4_mapped:
        return IPv4Network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
    return net


entries = st.one_of(
    networks().map(str),
    networks().map(lambda n: f" {n.exploded} "),
    st.ip_addresses().map(str),
    st.ip_addresses(network="::ffff:0:0/96").map(lambda a: f"{a}/128"),
    any_text,
    st.sampled_from(["", " ", "10.0.0.1/8", "10.0.0.0/33", "::/129", "1.2.3.4/-1", "/8"]),
)


@PROPERTY
@given(st.lists(entries, max_size=6))
def test_only_invalid_cidrs_is_raised_and_it_names_exactly_the_bad_entries(values):
    expected = [_reference(v) if v.strip() else None for v in values]
    if all(net is not None for net in expected):
        assert parse_cidrs(values) == expected
        return
    with pytest.raises(InvalidCIDRs) as info:
        parse_cidrs(values)
    named = [entry for entry, _ in info.value.invalid]
    assert named == [v for v, net in zip(values, expected, strict=True) if net is None]


@PROPERTY
@given(st.lists(networks(), max_size=6))
def test_results_are_canonical_and_idempotent(nets):
    parsed = parse_cidrs([str(n) for n in nets])
    assert parse_cidrs([str(n) for n in parsed]) == parsed
    for net in parsed:
        assert not (
            isinstance(net, IPv6Network)
            and net.prefixlen >= 96
            and (net.network_address.ipv4_mapped is not None)
        )


@PROPERTY
@given(st.lists(st.one_of(st.integers(), st.none(), st.binary(max_size=4)), min_size=1, max_size=3))
def test_non_strings_are_named_not_crashed_on(values):
    with pytest.raises(InvalidCIDRs) as info:
        parse_cidrs(values)
    assert len(info.value.invalid) == len(values)
