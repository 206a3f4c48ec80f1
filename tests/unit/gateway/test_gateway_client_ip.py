from ipaddress import ip_address, ip_network

import pytest
from starlette.responses import JSONResponse

from ontrackio.gateway.client_ip import (
    BadForwardedFor,
    ClientIPMiddleware,
    parse_ip,
    resolve_client_ip,
)

TRUSTED = [ip_network("10.0.0.0/8"), ip_network("2001:db8:ffff::/48")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:8080", "1.2.3.4"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:192.0.2.5", "192.0.2.5"),
        ("[::ffff:192.0.2.5]:80", "192.0.2.5"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_parse_ip_accepts_real_forms(text, expected):
    assert parse_ip(text) == ip_address(expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "unknown",
        "_hidden",
        "1.2.3.4:http",
        "1.2.3",
        "[2001:db8::1",
        "[::1]x",
        "999.1.1.1",
        "a b",
        "1.2.3.4:65536",
        "1.2.3.4:",
        "1.2.3.4%eth0",
        "[1.2.3.4]",
        "\xa01.2.3.4",
        "1.2.3.4\x85",
        "\u0661.2.3.4",
    ],
)
def test_parse_ip_rejects_garbage(text):
    assert parse_ip(text) is None


def test_untrusted_peer_ignores_forwarded_for():
    assert resolve_client_ip("203.0.113.9", ["1.1.1.1"], TRUSTED) == ip_address("203.0.113.9")


def test_trusted_peer_takes_rightmost_untrusted_hop():
    # The client spoofed 1.1.1.1; our proxy appended the real 198.51.100.4.
    chain = ["1.1.1.1", "198.51.100.4", "10.0.0.2"]
    assert resolve_client_ip("10.0.0.1", chain, TRUSTED) == ip_address("198.51.100.4")


@pytest.mark.parametrize(
    "chain",
    [
        ["1.1.1.1", "bogus", "10.0.0.2"],
        ["bogus"],
        [""],
        ["198.51.100.4", ""],
        ["unknown"],
        ["_hidden", "10.0.0.2"],
        ["198.51.100.4", "\xa010.0.0.2"],
        ["1.2.3.4%eth0"],
        ["[198.51.100.4]"],
        ["10.9.9.9", "unknown", "10.0.0.2"],
    ],
)
def test_an_unparsable_hop_before_the_client_fails_closed(chain):
    # Never the last trusted hop instead: that would give the client a proxy's address.
    with pytest.raises(BadForwardedFor):
        resolve_client_ip("10.0.0.1", chain, TRUSTED)


def test_what_the_client_wrote_left_of_its_own_address_is_never_read():
    chain = ["garbage", "unknown", "", "198.51.100.4", "10.0.0.2"]
    assert resolve_client_ip("10.0.0.1", chain, TRUSTED) == ip_address("198.51.100.4")


def test_forwarded_for_from_an_untrusted_peer_is_not_parsed():
    assert resolve_client_ip("203.0.113.9", ["garbage"], TRUSTED) == ip_address("203.0.113.9")


def test_all_trusted_means_leftmost_hop():
    assert resolve_client_ip("10.0.0.1", ["10.9.9.9", "10.0.0.2"], TRUSTED) == ip_address(
        "10.9.9.9"
    )


def test_trusted_peer_without_forwarded_for_is_the_client():
    assert resolve_client_ip("10.0.0.1", [], TRUSTED) == ip_address("10.0.0.1")


def test_mapped_peer_is_matched_against_ipv4_proxies():
    assert resolve_client_ip("::ffff:10.0.0.1", ["198.51.100.4"], TRUSTED) == ip_address(
        "198.51.100.4"
    )


def test_ipv6_proxy_and_client_with_ports_and_brackets():
    chain = ["[2001:db8:1::5]:1234", "[2001:db8:ffff::2]:80"]
    assert resolve_client_ip("2001:db8:ffff::1", chain, TRUSTED) == ip_address("2001:db8:1::5")


def test_unknown_peer_is_none():
    assert resolve_client_ip(None, ["1.1.1.1"], TRUSTED) is None


async def echo(scope, receive, send):
    state = scope["state"]
    await JSONResponse({"ip": str(state["client_ip"]), "trusted": state["peer_trusted"]})(
        scope, receive, send
    )


def test_middleware_spoofed_header_from_untrusted_peer(asgi):
    app = ClientIPMiddleware(echo, trusted_proxies=TRUSTED)
    result = asgi(app, headers=[("X-Forwarded-For", "10.0.0.5")], client=("198.51.100.7", 1))
    assert result.json() == {"ip": "198.51.100.7", "trusted": False}


def test_middleware_joins_multiple_header_lines(asgi):
    app = ClientIPMiddleware(echo, trusted_proxies=TRUSTED)
    headers = [("X-Forwarded-For", "6.6.6.6, 198.51.100.4"), ("X-Forwarded-For", "10.0.0.3")]
    result = asgi(app, headers=headers, client=("10.0.0.1", 1))
    assert result.json() == {"ip": "198.51.100.4", "trusted": True}


def test_middleware_without_client(asgi):
    app = ClientIPMiddleware(echo, trusted_proxies=TRUSTED)
    assert asgi(app, client=None).json() == {"ip": "None", "trusted": False}


@pytest.mark.parametrize("xff", ["garbage", "", "198.51.100.4, unknown", "_obf, 10.0.0.3", " , "])
def test_middleware_refuses_a_bad_hop_from_a_trusted_proxy(asgi, xff):
    app = ClientIPMiddleware(echo, trusted_proxies=TRUSTED)
    result = asgi(app, headers=[("X-Forwarded-For", xff)], client=("10.0.0.1", 1))
    assert result.status == 400 and result.is_problem
    assert "X-Forwarded-For" in result.json()["detail"]


def test_middleware_ignores_a_bad_header_from_an_untrusted_peer(asgi):
    app = ClientIPMiddleware(echo, trusted_proxies=TRUSTED)
    result = asgi(app, headers=[("X-Forwarded-For", "garbage")], client=("198.51.100.7", 1))
    assert result.json() == {"ip": "198.51.100.7", "trusted": False}


def test_a_websocket_with_a_bad_hop_is_closed_not_answered_with_http():
    import asyncio

    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/",
        "headers": [(b"x-forwarded-for", b"unknown")],
        "client": ("10.0.0.1", 1),
    }
    asyncio.run(ClientIPMiddleware(echo, trusted_proxies=TRUSTED)(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]
