"""Properties of client-address parsing: total, canonical, in agreement with ``ipaddress``, and
fail-closed behind trusted proxies whatever X-Forwarded-For holds."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.gateway.client_ip import (
    BadForwardedFor,
    ClientIPMiddleware,
    forwarded_for_entries,
    is_trusted,
    parse_ip,
    resolve_client_ip,
    unmap,
)
from tests.unit.gateway.conftest import call
from tests.unit.gateway.strategies import PROPERTY, any_text, latin1_text

TRUSTED = [ip_network("10.0.0.0/8"), ip_network("2001:db8:ffff::/48")]
PEER = "10.0.0.1"

addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
ports = st.integers(0, 65535)
ows = st.sampled_from(["", " ", "\t", "  \t"])
GARBAGE = ["", "unknown", "_hidden", "_a.b", "garbage", "1.2.3", "[::1", "::1]", "1.2.3.4%x"]


def _spellings(ip, port, pad):
    forms = [str(ip), ip.exploded]
    if isinstance(ip, IPv4Address):
        forms.append(f"{ip}:{port}")
    else:
        forms += [f"[{ip}]", f"[{ip}]:{port}", f"[{ip.exploded}]:{port}"]
    return [pad + form + pad for form in forms]


@PROPERTY
@given(addresses, ports, ows)
def test_every_spelling_of_an_address_parses_to_it(ip, port, pad):
    for text in _spellings(ip, port, pad):
        assert parse_ip(text) == unmap(ip), text


@PROPERTY
@given(st.one_of(any_text, latin1_text, st.sampled_from(GARBAGE)))
@example("\u0661.2.3.4")
@example("\xa01.2.3.4")
@example("1.2.3.4:99999")
def test_parse_is_total_canonical_and_agrees_with_ipaddress(text):
    ip = parse_ip(text)  # never raises
    if ip is None:
        return
    assert isinstance(ip, IPv4Address | IPv6Address)
    assert not (isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None)
    assert parse_ip(str(ip)) == ip  # canonical: its text form parses to itself
    core = text.strip(" \t")
    assert core.isascii(), text
    # The address part, as ipaddress reads it, is the same address.
    if core.startswith("["):
        core = core[1 : core.index("]")]
    elif core.count(":") == 1:
        core = core.partition(":")[0]
    assert unmap(ip_address(core.partition("%")[0])) == ip, text


hop = st.one_of(
    st.ip_addresses(network="10.0.0.0/8").map(str),
    st.ip_addresses(network="2001:db8:ffff::/48").map(lambda a: f"[{a}]:443"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(GARBAGE),
    latin1_text,
)


@PROPERTY
@given(st.lists(hop, max_size=8))
def test_behind_a_trusted_proxy_the_answer_is_an_untrusted_hop_or_a_refusal(chain):
    parsed = [parse_ip(entry) for entry in chain]
    try:
        client = resolve_client_ip(PEER, chain, TRUSTED)
    except BadForwardedFor:
        # Some hop is garbage with only parsable, trusted hops right of it.
        bad = max(i for i, ip in enumerate(parsed) if ip is None)
        assert all(ip is not None and is_trusted(ip, TRUSTED) for ip in parsed[bad + 1 :])
        return
    if not chain:
        assert client == ip_address(PEER)
        return
    if is_trusted(client, TRUSTED):
        # Only when every hop is a trusted proxy: then the left-most one.
        assert all(ip is not None and is_trusted(ip, TRUSTED) for ip in parsed)
        assert client == parsed[0]
        return
    index = max(i for i, ip in enumerate(parsed) if ip == client)
    assert all(ip is not None and is_trusted(ip, TRUSTED) for ip in parsed[index + 1 :])


@PROPERTY
@given(st.lists(hop, max_size=6), addresses)
def test_an_untrusted_peer_is_the_client_whatever_it_sends(chain, peer):
    if is_trusted(unmap(peer), TRUSTED):
        return
    assert resolve_client_ip(str(peer), chain, TRUSTED) == unmap(peer)


@PROPERTY
@given(st.lists(st.binary(max_size=40), max_size=4))
def test_header_lines_split_into_entries_without_raising(values):
    entries = forwarded_for_entries([(b"x-forwarded-for", v) for v in values])
    assert len(entries) == sum(v.count(b",") + 1 for v in values)


async def _echo(scope, receive, send):
    from starlette.responses import JSONResponse

    await JSONResponse({"ip": str(scope["state"]["client_ip"])})(scope, receive, send)


APP = ClientIPMiddleware(_echo, trusted_proxies=TRUSTED)


@PROPERTY
@given(st.lists(st.lists(hop, min_size=1, max_size=4).map(", ".join), max_size=3))
def test_the_middleware_answers_200_with_an_address_or_a_400_problem(lines):
    headers = [("X-Forwarded-For", line.replace("\r", "").replace("\n", "")) for line in lines]
    result = call(APP, "/", headers=headers, client=(PEER, 1))
    if result.status == 400:
        assert result.is_problem
    else:
        assert result.status == 200
        assert parse_ip(result.json()["ip"]) is not None
