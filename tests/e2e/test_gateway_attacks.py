"""The running gateway against requests crafted byte by byte: path tricks on /admin, spoofed
forwarding headers, Host variants, IPv6 and mapped addresses, revoked tokens across workers,
oversized and deeply nested bodies. None may produce a 500 or reach a service: each "reached no
service" check compares a counter that exists before and after, and shows the same counter
moving for a request that does reach the service."""

from __future__ import annotations

import socket
import threading
import time

import grpc
import pytest

from ontrackio.gateway.limits import DRAIN_BYTES, DRAIN_SECONDS
from ontrackio.gateway.settings import GatewaySettings
from ontrackio.identity.v1 import access_pb2 as apb
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import (  # noqa: F401 - fixtures
    Conn,
    Gateway,
    access_stub,
    gateway_fixture,
    make_token,
    new_source,
    raw,
    request_bytes,
    tenant_a_fixture,
    tenant_b_fixture,
)
from tests.helpers import create_tenant, eventually, extra_gateway, md

pytestmark = pytest.mark.e2e

ALLOWED = "127.0.99.0/24"
GATEWAY_WORKERS = GatewaySettings.model_fields["workers"].default  # the stack keeps it
INSIDE = "127.0.99.9"


@pytest.fixture(scope="module")
def locked(channels, gateway):
    """A tenant whose admin area only 127.0.99.0/24 may use, and its admin token."""
    slug = unique("gk")
    create_tenant(channels, slug)
    _, admin = make_token(channels, slug, "admin", "api:read", "api:write")
    r = gateway.call(
        "PUT", "/admin/api/v1/allowlist", slug, admin, {"cidrs": [ALLOWED]}, source=INSIDE
    )
    assert r.status == 200, r
    return slug, admin


ADMIN_TRICKS = [
    "/admin/api/v1/tokens",
    "/ADMIN/api/v1/tokens",
    "/Admin/api/v1/tokens",
    "//admin/api/v1/tokens",
    "///admin//api/v1/tokens",
    "/./admin/api/v1/tokens",
    "/api/../admin/api/v1/tokens",
    "/api/v1/../../admin/api/v1/tokens",
    "/%61dmin/api/v1/tokens",
    "/%41DMIN/api/v1/tokens",
    "/%2561dmin/api/v1/tokens",
    "/api/%2e%2e/admin/api/v1/tokens",
    "/api/%252e%252e/admin/api/v1/tokens",
    "/%2fadmin/api/v1/tokens",
    "/admin%2fapi%2fv1%2ftokens",
    "/admin;x=1/api/v1/tokens",
    "/api\\..\\admin/api/v1/tokens",
    "/admin/",
    "/admin",
    "/admin?x=1",
    "/admin%00/api",
    "/%EF%BD%81dmin/api/v1/tokens",  # fullwidth "a" (NFKC)
]


def _list_tokens_calls(gateway) -> float:
    return gateway.counter("ontrack_gateway_upstream_calls", method="ListTokens")


def test_path_tricks_on_admin_are_refused_and_reach_no_service(gateway, locked):
    slug, admin = locked
    # From inside the allowlist the canonical path reaches identity's ListTokens (so its
    # series exists before the tricks are counted against it).
    assert gateway.call("GET", "/admin/api/v1/tokens", slug, admin, source=INSIDE).status == 200
    before = _list_tokens_calls(gateway)
    for target in ADMIN_TRICKS:
        r = gateway.call("GET", target, slug, admin, source="127.0.98.1")
        assert r.status in (400, 403), (target, r)
        assert r.headers["content-type"] == "application/problem+json", target
    absolute = raw(
        gateway.port,
        request_bytes(
            "GET",
            f"http://{gateway.host(slug)}/admin/api/v1/tokens",
            gateway.host(slug),
            [("Authorization", f"Bearer {admin}")],
            close=True,
        ),
        source="127.0.98.2",
    )
    assert absolute.status == 403
    assert _list_tokens_calls(gateway) == before
    # Positive control: the same counter moves for the canonical path from inside.
    assert gateway.call("GET", "/admin/api/v1/tokens", slug, admin, source=INSIDE).status == 200
    assert _list_tokens_calls(gateway) == before + 1


# Spellings the path guard refuses (400) before the tenant look-up: the first four reached
# DELETE /admin/api/v1/tokens/{id} from a denied address (the dots resolve away for the allowlist,
# Starlette routes them as a token id), the rest are their relatives.
GUARDED_TARGETS = [
    "/admin/api/v1/tokens/..%5c..%5c..%5c..",
    "/admin/api/v1/tokens/..\\..\\..\\..",
    "/admin/api/v1/tokens/%252e%252e%252f",
    "/admin/api/v1/tokens/%E2%80%A5%EF%BC%8F",  # U+2025 U+FF0F, percent-encoded (h11 wants ASCII)
    "/admin/api/v1/tokens/..",
    "/admin/api/v1/tokens/.",
    "/admin/api/v1/tokens/%2e%2e",
    "/admin/api/v1/tokens/%252e%252e",
    "/admin/api/v1/tokens/..;x",
    "/admin/api/v1/tokens/x%2f..%2f..",
    "/admin/api/v1/tokens/x%252f..",
    "/admin/api/v1/tokens/%5c",
    "/admin/api/v1/tokens/%255c",
    "/admin/api/v1/tokens/%c0%ae%c0%ae",  # overlong UTF-8 dots
    "/admin/api/v1/tokens/%c0%af",  # overlong UTF-8 slash
    "/admin/api/v1/tokens/%00",
    "/admin/api/v1/tokens/%2500",
    "/admin/api/v1/tokens/%EF%BC%8E%EF%BC%8E",  # full-width dots
    "/admin/api/v1/tokens/%E2%80%A6",  # horizontal ellipsis
    "/admin/api/v1/tokens/%EF%BC%BC",  # full-width backslash
    "/admin/api/v1/tokens/%25EF%25BC%258F",  # full-width slash, double-encoded
    "/api/v1/assets/..%2f..%2fadmin%2fapi%2fv1%2ftokens",
    "/api/v1/users/..\\..\\..\\admin",
]


def _identity_calls(gateway) -> float:
    """The gateway's calls to identity's gRPC services (the counter's service label is the
    gRPC service: identity serves these four), summed over the series that exist; the
    tenant one must (every tenant a test used was looked up)."""
    scrape = gateway.scrape()
    name = "ontrack_gateway_upstream_calls_total"
    assert scrape.has(name, service="tenant"), "no GetTenant series: the counter is not read"
    return sum(
        scrape.value(name, service=service)
        for service in ("tenant", "access", "user", "audit")
        if scrape.has(name, service=service)
    )


def test_path_guard_refuses_traversal_before_identity(gateway, channels):
    # A tenant and a token the gateway has never seen: any request that got as far as the
    # tenant look-up would cost identity a GetTenant, any that got to authentication a
    # LookupToken (no cache holds either).
    slug = unique("gg")
    create_tenant(channels, slug)
    _, fresh = make_token(channels, slug, "admin")
    before = _identity_calls(gateway)
    replies = [
        (target, gateway.call("DELETE", target, slug, fresh, source="127.0.98.5"))
        for target in GUARDED_TARGETS
    ]
    assert _identity_calls(gateway) == before
    for target, r in replies:
        assert r.status == 400, (target, r)
        assert r.headers["content-type"] == "application/problem+json", target
        assert r.json()["detail"].startswith("The request path"), (target, r.json())
    # Positive control: the same counter moves for a request that does reach identity (the
    # tenant and the fresh token are looked up, then the unknown id is not found).
    r = gateway.call("DELETE", "/admin/api/v1/tokens/" + "0" * 24, slug, fresh, source=INSIDE)
    assert r.status == 404, r
    assert _identity_calls(gateway) >= before + 2


def test_spoofed_forwarding_headers_from_an_untrusted_peer_are_ignored(gateway, locked, tenant_b):
    slug, admin = locked
    spoofs = [
        ("X-Forwarded-For", INSIDE),
        ("X-Forwarded-For", f"1.2.3.4, {INSIDE}"),
        ("Forwarded", f"for={INSIDE}"),
        ("X-Real-IP", INSIDE),
    ]
    for header in spoofs:
        r = gateway.call(
            "GET", "/admin/api/v1/tokens", slug, admin, source="127.0.98.3", headers=[header]
        )
        assert r.status == 403, header
    # X-Forwarded-Host does not move the request to another tenant.
    r = gateway.call(
        "GET",
        "/api/v1/assets",
        slug,
        admin,
        headers=[("X-Forwarded-Host", f"{tenant_b}.localhost")],
    )
    assert r.status == 200


def test_host_variants(gateway, tenant_a, channels):
    _, token = make_token(channels, tenant_a, "api:read")
    auth = [("Authorization", f"Bearer {token}")]
    port = gateway.port
    for host in (
        f"{tenant_a}.localhost",
        f"{tenant_a.upper()}.LOCALHOST:{port}",
        f"{tenant_a}.localhost.:{port}",
        f"{tenant_a}.LocalHost.",
    ):
        r = raw(
            port,
            request_bytes("GET", "/api/v1/assets", host, auth, close=True),
            source=new_source(),
        )
        assert r.status == 200, (host, r)
    unknown_bodies = set()
    for host in (
        "localhost",
        "127.0.0.1",
        "[::1]",
        f"x{tenant_a}.localhost",
        "evil.example.com",
        f"{tenant_a}.localhost.evil.example",
        f"{tenant_a}.127.0.0.1.nip.io",
        f"a.{tenant_a}.localhost",
    ):
        r = raw(
            port,
            request_bytes("GET", "/api/v1/assets", host, auth, close=True),
            source=new_source(),
        )
        assert r.status == 404, (host, r)
        unknown_bodies.add(r.body)
    assert len(unknown_bodies) == 1
    for bad in ([("Host", f"{tenant_a}.localhost")], [("Host", "")]):
        r = raw(
            port,
            request_bytes("GET", "/api/v1/assets", f"{tenant_a}.localhost", bad + auth, close=True),
            source=new_source(),
        )
        assert r.status == 400, (bad, r)
    r = raw(
        port,
        request_bytes(
            "GET",
            "http://evil.example.com/api/v1/assets",
            f"{tenant_a}.localhost",
            auth,
            close=True,
        ),
        source=new_source(),
    )
    assert r.status == 400


def connections_to_every_worker(gateway) -> dict[str, Conn]:
    """A keep-alive connection to each of the gateway's workers (a connection stays on the
    worker that accepted it), by the worker's name in /healthz."""
    conns: dict[str, Conn] = {}
    for _ in range(60):
        c = Conn(gateway.port, new_source())
        worker = c.send("GET", "/healthz", "localhost").json()["worker"]
        if worker in conns:
            c.close()
        else:
            conns[worker] = c
        if len(conns) == GATEWAY_WORKERS:
            return conns
    for c in conns.values():
        c.close()
    raise AssertionError(f"reached {len(conns)} of {GATEWAY_WORKERS} gateway workers")


def _without_date(reply):
    # Date and the request id differ between any two responses; both must be present.
    assert {"date", "x-request-id"} <= set(reply.headers), reply.headers
    return {k: v for k, v in reply.headers.items() if k not in ("date", "x-request-id")}


@pytest.fixture(scope="module")
def sticky(system, tmp_path_factory):
    """A gateway that remembers tenants for a minute: after a suspension it still passes the
    tenant on, and only the services' own tenant check refuses it."""
    with extra_gateway(
        system,
        "gateway-sticky",
        tmp_path_factory.mktemp("sticky"),
        ONTRACK_GATEWAY_WORKERS="1",
        ONTRACK_GATEWAY_TENANT_CACHE_SECONDS="60",
    ) as port:
        yield Gateway(port)


def test_suspended_and_unknown_tenants_get_the_same_404(gateway, sticky, channels):
    slug = unique("gs")
    create_tenant(channels, slug)
    _, token = make_token(channels, slug, "api:read", "api:write", "admin")
    for gw in (gateway, sticky):
        assert gw.call("GET", "/api/v1/assets", slug, token).status == 200
    igrpc.TenantServiceStub(channels["identity"]).SuspendTenant(
        ipb.GetTenantRequest(slug=slug), timeout=10
    )
    assets = inventory_pb2_grpc.AssetServiceStub(channels["inventory"])

    def services_refuse() -> bool:
        try:
            assets.ListAssets(inventory_pb2.ListAssetsRequest(), metadata=md(slug), timeout=5)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        return False

    eventually(services_refuse, timeout=10)
    # The main gateway's workers each remember the tenant for 2 s: wait until every one of
    # them refuses it at the edge, its own look-up having seen the suspension (a 404 with no
    # ListAssets call behind it), so the main gateway shows the edge's answer and the sticky
    # one the services' refusal.
    auth = [("Authorization", f"Bearer {token}")]
    conns = connections_to_every_worker(gateway)

    def refused_at_the_edge(conn: Conn) -> bool:
        before = gateway.counter("ontrack_gateway_upstream_calls", method="ListAssets")
        r = conn.send("GET", "/api/v1/assets", gateway.host(slug), auth)
        return (
            r.status == 404
            and gateway.counter("ontrack_gateway_upstream_calls", method="ListAssets") == before
        )

    try:
        for conn in conns.values():
            eventually(lambda c=conn: refused_at_the_edge(c), timeout=10, interval=0.2)
    finally:
        for conn in conns.values():
            conn.close()
    nobody = unique("nx")
    for gw in (gateway, sticky):
        for method, target in (
            ("GET", "/api/v1/assets"),
            ("GET", "/admin/api/v1/tokens"),
            ("POST", "/api/v1/assets"),
            ("HEAD", "/api/v1/users"),
        ):
            body = {"name": "x", "kind": "saas"} if method == "POST" else None
            unknown = gw.call(method, target, nobody, token, body)
            suspended = gw.call(method, target, slug, token, body)
            where = (gw.port, method, target)
            assert unknown.status == suspended.status == 404, (where, suspended)
            assert _without_date(suspended) == _without_date(unknown), where
            assert suspended.body == unknown.body, where


def test_a_flood_of_unknown_hosts_is_answered_from_the_negative_cache(gateway, tenant_a):
    # 36 requests: under the per-address burst.
    hosts = [f"{unique('zz')}.localhost" for _ in range(12)]
    before = gateway.counter("ontrack_gateway_upstream_calls", method="GetTenant")
    conn = Conn(gateway.port, new_source())
    for _ in range(3):
        for host in hosts:
            assert conn.send("GET", "/api/v1/assets", host).status == 404
    conn.close()
    asked = gateway.counter("ontrack_gateway_upstream_calls", method="GetTenant") - before
    # At least once per host (each was new), at most once per host per worker: not once per
    # request.
    assert len(hosts) <= asked <= len(hosts) * GATEWAY_WORKERS


def _lookups(gateway) -> float:
    return gateway.counter("ontrack_gateway_upstream_calls", method="LookupToken")


def test_invalid_tokens_never_reach_identity(gateway, tenant_a, channels):
    host = gateway.host(tenant_a)
    _, primer = make_token(channels, tenant_a, "api:read")
    _, good = make_token(channels, tenant_a, "api:read")
    # A token the gateway has not seen is looked up: the series exists from here on.
    assert gateway.call("GET", "/api/v1/assets", tenant_a, primer).status == 200
    before = _lookups(gateway)
    conn = Conn(gateway.port, new_source())
    bad = [
        "garbage",
        "otk_",
        good[:-1],
        "otk_" + "f" * 24 + good[28:],
        "otk_" + good[4:12] + "0" * 16 + good[28:],
    ]
    for token in bad * 6:
        r = conn.send("GET", "/api/v1/assets", host, [("Authorization", f"Bearer {token}")])
        assert r.status == 401
    assert _lookups(gateway) == before
    # Positive control: the good token those were made from, on the same connection, is.
    r = conn.send("GET", "/api/v1/assets", host, [("Authorization", f"Bearer {good}")])
    conn.close()
    assert r.status == 200, r
    assert _lookups(gateway) == before + 1


def _create_asset_calls(gateway) -> float:
    return gateway.counter("ontrack_gateway_upstream_calls", method="CreateAsset")


def _create_an_asset(gateway, tenant: str, token: str) -> None:
    """A valid POST /api/v1/assets: it reaches inventory's CreateAsset (the positive control
    of the bodies that must not)."""
    r = gateway.call(
        "POST", "/api/v1/assets", tenant, token, {"name": unique("ok"), "kind": "saas"}
    )
    assert r.status == 201, r


def test_oversized_and_deeply_nested_bodies_never_reach_a_service(gateway, tenant_a, channels):
    _, token = make_token(channels, tenant_a, "api:write", "api:read")
    auth = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    host = gateway.host(tenant_a)
    _create_an_asset(gateway, tenant_a, token)
    before = _create_asset_calls(gateway)
    big = b'{"name": "' + b"x" * 2_000_000 + b'", "kind": "saas"}'
    # The gateway reads (and discards) the refused body before answering, so the client gets to
    # send it all and read the 413 (test_oversized_uploads_get_the_413_not_a_connection_reset).
    r = raw(
        gateway.port,
        request_bytes("POST", "/api/v1/assets", host, auth, big, close=True),
        source=new_source(),
    )
    assert r.status == 413
    assert r.headers["content-type"] == "application/problem+json"
    # A declared length far past the limit is refused at once, with no body sent at all
    # (the request carries that one Content-Length only: the kit adds none beside it).
    lying = request_bytes(
        "POST", "/api/v1/assets", host, auth + [("Content-Length", "99999999999")], close=True
    )
    assert raw(gateway.port, lying, source=new_source()).status == 413
    chunked = (
        request_bytes(
            "POST", "/api/v1/assets", host, auth + [("Transfer-Encoding", "chunked")], close=True
        )
        + b"".join(b"%x\r\n%s\r\n" % (65536, b"[" * 65536) for _ in range(20))
        + b"0\r\n\r\n"
    )
    assert raw(gateway.port, chunked, source=new_source()).status == 413
    for body in (
        b"[" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"{bad json",
        b'{"name": NaN, "kind": "saas"}',
        b"\xff\xfe",
    ):
        r = raw(
            gateway.port,
            request_bytes("POST", "/api/v1/assets", host, auth, body, close=True),
            source=new_source(),
        )
        assert r.status == 400, (body[:20], r)
        assert r.headers["content-type"] == "application/problem+json"
    assert _create_asset_calls(gateway) == before
    _create_an_asset(gateway, tenant_a, token)
    assert _create_asset_calls(gateway) == before + 1


def test_oversized_uploads_get_the_413_not_a_connection_reset(gateway, tenant_a, channels):
    """A refused body within the drain budget is read and discarded before the 413, so a client
    still uploading reads the 413 rather than a RST; beyond the budget it is refused at once."""
    _, token = make_token(channels, tenant_a, "api:write")
    auth = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    host = gateway.host(tenant_a)
    _create_an_asset(gateway, tenant_a, token)
    before = _create_asset_calls(gateway)
    big = b'{"name": "' + b"x" * 2_000_000 + b'", "kind": "saas"}'
    for _ in range(10):
        conn = Conn(gateway.port, new_source())
        # A small send buffer keeps the client sending while the gateway decides, as over a real
        # network; on loopback the kernel would otherwise take the whole body at once and hide
        # the race (without the drain: a reset on sendall, or after the reply, every round).
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        try:
            r = conn.send("POST", "/api/v1/assets", host, auth, big)
            assert r.status == 413, r
            assert r.headers["content-type"] == "application/problem+json"
            assert conn.sock.recv(65536) == b"", "the gateway should close with a FIN, not a RST"
        finally:
            conn.close()
    # Declared beyond the budget, and no body sent: draining would sit out the time bound.
    beyond = GatewaySettings.model_fields["max_body_bytes"].default + DRAIN_BYTES + 1
    headers_only = request_bytes("POST", "/api/v1/assets", host, auth, close=True).replace(
        b"Content-Length: 0", b"Content-Length: %d" % beyond
    )
    started = time.monotonic()
    r = raw(gateway.port, headers_only, source=new_source())
    assert r.status == 413, r
    assert time.monotonic() - started < DRAIN_SECONDS * 0.9
    assert _create_asset_calls(gateway) == before
    _create_an_asset(gateway, tenant_a, token)
    assert _create_asset_calls(gateway) == before + 1


def test_revocation_takes_effect_at_every_worker_within_a_second(gateway, channels, tenant_a):
    token_id, token = make_token(channels, tenant_a, "api:read")
    conns = connections_to_every_worker(gateway)
    for c in conns.values():  # every worker has the token cached
        for _ in range(2):
            assert (
                c.send(
                    "GET",
                    "/api/v1/assets?page_size=1",
                    gateway.host(tenant_a),
                    [("Authorization", f"Bearer {token}")],
                ).status
                == 200
            )
    access_stub(channels).RevokeToken(
        apb.RevokeTokenRequest(id=token_id), metadata=md(tenant_a), timeout=10
    )
    revoked_at = time.monotonic()
    results: dict[str, list[tuple[float, int]]] = {w: [] for w in conns}

    def hammer(worker: str, c: Conn) -> None:
        while (t := time.monotonic() - revoked_at) < 1.5:
            r = c.send(
                "GET",
                "/api/v1/assets?page_size=1",
                gateway.host(tenant_a),
                [("Authorization", f"Bearer {token}")],
            )
            results[worker].append((t, r.status))
            time.sleep(0.06)  # ~15 requests/s: under the per-address rate

    threads = [threading.Thread(target=hammer, args=item) for item in conns.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for worker, seen in results.items():
        late = [s for t, s in seen if t >= 1.0]
        assert late and set(late) == {401}, (worker, seen)
        first_401 = min(t for t, s in seen if s == 401)
        assert first_401 < 1.0, (worker, seen)
        assert all(s in (200, 401, 429) for _, s in seen)
    for c in conns.values():
        c.close()


# -- a gateway of our own: on IPv6 loopback, behind a trusted proxy ---------------------------


@pytest.fixture(scope="module")
def proxied(system, tmp_path_factory):
    """A second gateway listening on [::1] that trusts ::1 as its proxy."""
    with extra_gateway(
        system,
        "gateway-proxied",
        tmp_path_factory.mktemp("proxied"),
        ONTRACK_GATEWAY_HOST="::1",
        ONTRACK_GATEWAY_WORKERS="1",
        ONTRACK_GATEWAY_TRUSTED_PROXIES="::1/128",
    ) as port:
        yield port


def test_trusted_proxy_forwarding_ipv6_and_mapped_addresses(proxied, channels):
    slug = unique("gp")
    create_tenant(channels, slug)
    _, admin = make_token(channels, slug, "admin")
    _, v4 = make_token(channels, slug, "api:read", cidrs=["198.51.100.0/24"])
    _, v6 = make_token(channels, slug, "api:read", cidrs=["2001:db8::/32"])
    host = f"{slug}.localhost:{proxied}"

    def send(method, path, token, forwarded_for=None, body=b"", host=host, extra=()):
        headers = [("Authorization", f"Bearer {token}"), *extra]
        if forwarded_for is not None:
            headers.append(("X-Forwarded-For", forwarded_for))
        if body:
            headers.append(("Content-Type", "application/json"))
        return raw(
            proxied,
            request_bytes(method, path, host, headers, body, close=True),
            host_ip="::1",
            family=socket.AF_INET6,
        )

    r = send(
        "PUT",
        "/admin/api/v1/allowlist",
        admin,
        "127.0.60.1",
        b'{"cidrs": ["198.51.100.0/24", "127.0.60.0/24"]}',
    )
    assert r.status == 200, r
    assert send("GET", "/api/v1/assets", v4, "198.51.100.7").status == 200
    # IPv4-mapped IPv6 is the IPv4 client.
    assert send("GET", "/api/v1/assets", v4, "::ffff:198.51.100.7").status == 200
    assert send("GET", "/admin/api/v1/allowlist", admin, "::ffff:127.0.60.9").status == 200
    # The right-most untrusted hop is the client; what a client wrote left of it is ignored.
    assert send("GET", "/api/v1/assets", v4, "198.51.100.7, 203.0.113.5").status == 401
    # A hop the proxy vouches for that is not an address fails closed: a 400, never the proxy's
    # own address standing in for the client.
    for forwarded in ("198.51.100.7, garbage", "", "unknown", "_hidden", "198.51.100.7,,", " , "):
        r = send("GET", "/admin/api/v1/allowlist", admin, forwarded)
        assert r.status == 400, (forwarded, r)
        assert r.headers["content-type"] == "application/problem+json"
        assert "X-Forwarded-For" in r.json()["detail"]
    # What the client wrote left of its own address is not read.
    assert send("GET", "/api/v1/assets", v4, "garbage, 198.51.100.7").status == 200
    # IPv6 clients: token CIDRs and the allowlist apply to them too.
    assert send("GET", "/api/v1/assets", v6, "2001:db8::5").status == 200
    assert send("GET", "/api/v1/assets", v6, "2001:db9::5").status == 401
    assert send("GET", "/admin/api/v1/allowlist", admin, "2001:db8::5").status == 403
    # No X-Forwarded-For: the proxy itself (::1) is the client, outside the allowlist.
    assert send("GET", "/admin/api/v1/allowlist", admin).status == 403
    # Behind a trusted proxy, X-Forwarded-Host names the tenant.
    xfh = send(
        "GET",
        "/admin/api/v1/allowlist",
        admin,
        "198.51.100.8",
        host="nothing.localhost",
        extra=[("X-Forwarded-Host", host)],
    )
    assert xfh.status == 200
