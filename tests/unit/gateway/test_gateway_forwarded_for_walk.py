"""Client addresses at the edges of their parsing: the highest and lowest ports, only HTTP's
optional whitespace stripped from X-Forwarded-For entries, the walk stopping at the first
untrusted hop, and scopes the middleware leaves alone. Written to kill mutants that survived
the mutation check (docs/testing.md)."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address, ip_network

import pytest
from starlette.responses import JSONResponse

from ontrackio.gateway.client_ip import (
    ClientIPMiddleware,
    forwarded_for_entries,
    is_trusted,
    parse_ip,
    resolve_client_ip,
)

TRUSTED = [ip_network("10.0.0.0/8")]


@pytest.mark.parametrize("port", ["0", "1", "65535", "00080"])
def test_every_port_up_to_65535_is_accepted(port):
    assert parse_ip(f"192.0.2.1:{port}") == ip_address("192.0.2.1")
    assert parse_ip(f"[2001:db8::1]:{port}") == ip_address("2001:db8::1")


@pytest.mark.parametrize("port", ["65536", "99999", "000080", "-1", "+80", " 80"])
def test_ports_past_65535_or_not_five_digits_are_refused(port):
    assert parse_ip(f"192.0.2.1:{port}") is None
    assert parse_ip(f"[2001:db8::1]:{port}") is None


def test_brackets_need_a_closing_bracket_and_nothing_but_a_port_after_it():
    assert parse_ip("[2001:db8::1]") == ip_address("2001:db8::1")
    assert parse_ip("[]") is None
    assert parse_ip("[2001:db8::1]:") is None
    assert parse_ip("[2001:db8::1]80") is None


def test_entries_lose_spaces_and_tabs_only():
    headers = [(b"x-forwarded-for", b" 198.51.100.4\t,\t10.0.0.3 "), (b"host", b"a, b")]
    assert forwarded_for_entries(headers) == ["198.51.100.4", "10.0.0.3"]
    nbsp = [(b"x-forwarded-for", "\xa0198.51.100.4".encode("latin-1"))]
    assert forwarded_for_entries(nbsp) == ["\xa0198.51.100.4"]  # garbage, kept as garbage


def test_header_names_match_in_any_case():
    headers = [(b"X-Forwarded-For", b"198.51.100.4")]
    assert forwarded_for_entries(headers) == ["198.51.100.4"]


def test_trust_is_membership_of_any_listed_network():
    nets = [ip_network("10.0.0.0/8"), ip_network("192.0.2.0/24")]
    assert is_trusted(ip_address("192.0.2.9"), nets)
    assert not is_trusted(ip_address("192.0.3.9"), nets)
    assert not is_trusted(ip_address("10.0.0.1"), [])


def test_the_walk_stops_at_the_first_untrusted_hop_from_the_right():
    chain = ["garbage", "203.0.113.1", "198.51.100.4", "10.0.0.3"]
    assert resolve_client_ip("10.0.0.1", chain, TRUSTED) == ip_address("198.51.100.4")


def test_an_empty_peer_is_unknown():
    assert resolve_client_ip("", ["198.51.100.4"], TRUSTED) is None


async def _echo(scope, receive, send):
    await JSONResponse({"ip": str(scope["state"]["client_ip"])})(scope, receive, send)


def test_a_nbsp_before_the_client_address_from_a_trusted_proxy_is_refused(asgi):
    app = ClientIPMiddleware(_echo, trusted_proxies=TRUSTED)
    result = asgi(app, headers=[("X-Forwarded-For", "\xa0198.51.100.4")], client=("10.0.0.1", 1))
    assert result.status == 400 and result.is_problem


def test_a_trusted_proxys_forwarded_client_is_the_client(asgi):
    app = ClientIPMiddleware(_echo, trusted_proxies=TRUSTED)
    result = asgi(app, headers=[("X-Forwarded-For", "198.51.100.4")], client=("10.0.0.1", 1))
    assert result.json() == {"ip": "198.51.100.4"}


def test_a_websocket_behind_a_trusted_proxy_gets_its_client_address():
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope["state"])

    scope = {
        "type": "websocket",
        "headers": [(b"x-forwarded-for", b"198.51.100.4")],
        "client": ("10.0.0.1", 1),
    }
    asyncio.run(ClientIPMiddleware(app, trusted_proxies=TRUSTED)(scope, None, None))
    assert seen == {"client_ip": ip_address("198.51.100.4"), "peer_trusted": True}


def test_the_app_behind_it_gets_the_request_body(asgi):
    async def app(scope, receive, send):
        message = await receive()
        await JSONResponse({"body": message["body"].decode()})(scope, receive, send)

    middleware = ClientIPMiddleware(app, trusted_proxies=TRUSTED)
    result = asgi(middleware, method="POST", body=[b"hello"], client=("198.51.100.7", 1))
    assert result.json() == {"body": "hello"}


def test_a_lifespan_scope_passes_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append(dict(scope))

    scope = {"type": "lifespan"}
    asyncio.run(ClientIPMiddleware(app, trusted_proxies=TRUSTED)(scope, None, None))
    assert seen == [{"type": "lifespan"}]
