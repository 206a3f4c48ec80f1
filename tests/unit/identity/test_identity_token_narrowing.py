"""A token minting a token: never more scopes, a later expiry or wider networks than its own."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ontrackio.identity import access_tokens as rules
from ontrackio.identity.errors import TokenWidening

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def check(**changes):
    args = {
        "scopes": ["api:read"],
        "cidrs": [],
        "expires_at": NOW + HOUR,
        "parent_scopes": ["api:read", "admin"],
        "parent_cidrs": [],
        "parent_expires_at": None,
        "now": NOW,
    }
    args.update(changes)
    rules.check_narrower(**args)


def reasons(**changes) -> tuple[str, ...]:
    with pytest.raises(TokenWidening) as info:
        check(**changes)
    assert info.value.kind.name == "PERMISSION_DENIED"
    return info.value.reasons


def test_a_narrower_token_passes():
    check()
    check(scopes=["api:read", "admin"], expires_at=None)  # same as the parent: not wider
    check(parent_expires_at=NOW + 2 * HOUR, expires_at=NOW + 2 * HOUR)
    check(parent_cidrs=["10.0.0.0/8"], cidrs=["10.1.0.0/16", "10.2.3.4/32"])


def test_more_scopes_are_refused_naming_them():
    with pytest.raises(TokenWidening, match="'api:write'") as info:
        check(scopes=["api:read", "api:write"])
    assert info.value.reasons == (rules.WIDER_SCOPES,)


def test_a_later_or_missing_expiry_is_refused():
    end = NOW + HOUR
    assert reasons(parent_expires_at=end, expires_at=end + timedelta(seconds=1)) == (
        rules.WIDER_EXPIRY,
    )
    assert reasons(parent_expires_at=end, expires_at=None) == (rules.WIDER_EXPIRY,)
    with pytest.raises(TokenWidening, match="1 to 3600"):
        check(parent_expires_at=end, expires_at=None)


def test_wider_networks_are_refused():
    assert reasons(parent_cidrs=["10.0.0.0/8"], cidrs=[]) == (rules.WIDER_CIDRS,)
    assert reasons(parent_cidrs=["10.0.0.0/8"], cidrs=["11.0.0.0/8"]) == (rules.WIDER_CIDRS,)
    assert reasons(parent_cidrs=["10.0.0.0/8"], cidrs=["10.0.0.0/7"]) == (rules.WIDER_CIDRS,)


def test_every_widening_is_named_at_once():
    assert reasons(
        scopes=["scim"],
        expires_at=None,
        parent_expires_at=NOW + HOUR,
        parent_cidrs=["192.0.2.0/24"],
        cidrs=["198.51.100.0/24"],
    ) == (rules.WIDER_SCOPES, rules.WIDER_EXPIRY, rules.WIDER_CIDRS)


def test_adjacent_parent_networks_cover_their_union():
    assert rules.cidrs_within(["10.0.0.0/24"], ["10.0.0.0/25", "10.0.0.128/25"])
    assert not rules.cidrs_within(["10.0.0.0/24"], ["10.0.0.0/25", "10.0.1.0/25"])


def test_versions_never_cover_each_other():
    # address_allowed checks an IPv4 client (mapped or not) as IPv4, never against ::/0.
    assert not rules.cidrs_within(["10.0.0.0/8"], ["::/0"])
    assert not rules.cidrs_within(["::/0"], ["0.0.0.0/0"])
    assert not rules.cidrs_within(["::ffff:10.0.0.0/104"], ["::/0"])


def test_mapped_ipv4_is_ipv4():
    assert rules.cidrs_within(["::ffff:10.1.0.0/112"], ["10.0.0.0/8"])
    assert rules.cidrs_within(["10.1.0.0/16"], ["::ffff:10.0.0.0/104"])
    assert not rules.cidrs_within(["::ffff:11.0.0.0/104"], ["10.0.0.0/8"])


def test_actor_token_id():
    assert rules.actor_token_id("token:abc") == "abc"
    assert rules.actor_token_id("token:") == ""  # a token actor, with an id nobody has
    assert rules.actor_token_id("cli:ops") is None
    assert rules.actor_token_id("operator") is None


# -- properties -----------------------------------------------------------------------------

# Addresses bunched into small ranges, so that generated networks overlap and nest often.
ADDRESSES = st.one_of(
    st.ip_addresses(network="10.0.0.0/22"),
    st.ip_addresses(network="2001:db8::/118"),
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
)


@st.composite
def cidr(draw) -> str:
    address = draw(ADDRESSES)
    width = address.max_prefixlen
    prefix = draw(st.one_of(st.integers(width - 12, width), st.integers(0, width)))
    net = ipaddress.ip_network((address, prefix), strict=False)
    if net.version == 4 and draw(st.booleans()):  # the same network written IPv4-mapped
        return f"::ffff:{net.network_address}/{net.prefixlen + 96}"
    return str(net)


CIDR_LISTS = st.lists(cidr(), max_size=6)


def _net(text: str):
    net = ipaddress.ip_network(text)
    if net.version == 6 and net.prefixlen >= 96 and net.network_address.ipv4_mapped:
        return ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
    return net


def uncovered(child: list[str], parent: list[str]) -> list:
    """Oracle by set difference: the parts of ``child`` that no parent network admits."""
    if not parent:
        return []
    if not child:
        return ["every address"]
    left = [_net(c) for c in child]
    for p in map(_net, parent):
        rest = []
        for n in left:
            if n.version != p.version or not n.overlaps(p):
                rest.append(n)
            elif not n.subnet_of(p):
                rest.extend(n.address_exclude(p))
        left = rest
    return left


@settings(max_examples=400, deadline=None)
@given(child=CIDR_LISTS, parent=CIDR_LISTS)
def test_cidrs_within_agrees_with_set_difference(child, parent):
    assert rules.cidrs_within(child, parent) == (not uncovered(child, parent))


@settings(max_examples=300, deadline=None)
@given(child=CIDR_LISTS, parent=CIDR_LISTS, data=st.data())
def test_what_a_narrower_token_admits_its_minter_admits(child, parent, data):
    # As stored: the service normalises both (mapped IPv4 becomes IPv4) before checking.
    child, parent = rules.validate_cidrs(child), rules.validate_cidrs(parent)
    if not rules.cidrs_within(child, parent):
        # Refused: some address the child would admit is refused by the parent.
        gap = uncovered(child, parent)
        if gap != ["every address"]:
            assert not rules.address_allowed(str(gap[0].network_address), parent)
        return
    for text in child:
        net = _net(text)
        offset = data.draw(st.integers(0, net.num_addresses - 1))
        inside = net.network_address + offset
        forms = [str(inside)]
        if inside.version == 4:
            forms.append(f"::ffff:{inside}")
        for address in forms:
            assert rules.address_allowed(address, child)
            assert rules.address_allowed(address, parent)


@settings(max_examples=200, deadline=None)
@given(
    scopes=st.lists(st.sampled_from(rules.SCOPES), min_size=1),
    parent_scopes=st.lists(st.sampled_from(rules.SCOPES), min_size=1),
    child_life=st.one_of(st.none(), st.integers(1, rules.MAX_EXPIRY_SECONDS)),
    parent_life=st.one_of(st.none(), st.integers(1, rules.MAX_EXPIRY_SECONDS)),
)
def test_scopes_and_expiry_follow_the_minter(scopes, parent_scopes, child_life, parent_life):
    expires_at = None if child_life is None else NOW + timedelta(seconds=child_life)
    parent_end = None if parent_life is None else NOW + timedelta(seconds=parent_life)
    wider = set()
    if not set(scopes) <= set(parent_scopes):
        wider.add(rules.WIDER_SCOPES)
    if parent_end is not None and (expires_at is None or expires_at > parent_end):
        wider.add(rules.WIDER_EXPIRY)
    try:
        check(
            scopes=scopes,
            parent_scopes=parent_scopes,
            expires_at=expires_at,
            parent_expires_at=parent_end,
        )
    except TokenWidening as exc:
        assert set(exc.reasons) == wider and wider
    else:
        assert not wider


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(exclude_categories=()),
        max_size=60,
    )
    | st.sampled_from(["", "\x00", "１０.０.０.１", "10.0.0.1%2F8", "::ffff:300.1.1.1", "\ud800"])
)
def test_hostile_caller_addresses_are_never_admitted_by_a_list(text):
    assert rules.address_allowed(text, ["0.0.0.0/0", "::/0"]) is (_parses(text))


def _parses(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "bell\x07", "c1\x85x"])
def test_token_names_with_control_characters_are_refused(name):
    with pytest.raises(rules.InvalidToken, match="control characters"):
        rules.validate_name(name)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=80))
def test_audit_addresses_are_always_storable(text):
    kept = rules.audit_address(text)
    assert "\x00" not in kept and len(kept) <= 64 and kept.isprintable()
    if _parses(text):
        assert kept == str(ipaddress.ip_address(text))
