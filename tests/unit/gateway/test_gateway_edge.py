"""The composed edge against the attack catalogue: nothing gets through, nothing is a 500."""

from ipaddress import ip_network

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ontrackio.gateway.edge import build_edge, client_ip_of, tenant_of
from ontrackio.gateway.hosts import TenantInfo, tenant_resolver
from ontrackio.gateway.problems import install_problem_handlers
from ontrackio.gateway.settings import GatewaySettings

ACME = TenantInfo("t-1", "acme", tier="standard")
OFFICE = "192.0.2.0/24"


async def whoami(request: Request):
    await request.body()
    return JSONResponse(
        {
            "tenant": tenant_of(request).slug,
            "ip": str(client_ip_of(request)),
            "path": request.url.path,
        }
    )


def make_edge(*, by_slug=None, get_allowlist=None, **overrides):
    app = Starlette(
        routes=[
            Route("/whoami", whoami, methods=["GET", "POST"]),
            Mount("/admin", routes=[Route("/{rest:path}", whoami, methods=["GET", "POST"])]),
        ]
    )
    install_problem_handlers(app)
    settings = GatewaySettings(
        trusted_proxies=[ip_network("10.0.0.0/8")],
        max_body_bytes=1000,
        security_txt_contact=["mailto:security@ontrack.io"],
        **overrides,
    )

    async def acme_only(slug):
        return ACME if slug == "acme" else None

    async def by_domain(domain):
        return None

    async def office_only(tenant):
        return [ip_network(OFFICE)]

    by_slug = by_slug or acme_only
    get_allowlist = get_allowlist or office_only

    return build_edge(
        app,
        settings,
        resolve_tenant=tenant_resolver("localhost", by_slug=by_slug, by_custom_domain=by_domain),
        get_allowlist=get_allowlist,
    )


EDGE = make_edge(rate_limit_ip_burst=10_000)


def test_normal_request_carries_tenant_and_ip(asgi):
    result = asgi(EDGE, "/whoami")
    assert result.status == 200
    assert result.json()["tenant"] == "acme"
    assert result.json()["ip"] == "203.0.113.7"
    assert result.header("x-content-type-options") == "nosniff"


# Spellings of /admin the allowlist sees through (403), and those the path guard refuses first
# (400): dot segments, backslashes, encoded slashes, NUL.
ADMIN_SPELLINGS = [
    b"/admin",
    b"/admin/",
    b"/ADMIN",
    b"/Admin/x",
    b"//admin",
    b"/%61dmin",
    b"/%2561dmin",
    b"/admin;x=1",
    b"/%ef%bd%81dmin",
    b"http://acme.localhost/admin",
]
GUARDED_TRICKS = [
    b"/x/../admin",
    b"/./admin/",
    b"/admin%2fapi",
    b"/admin%2Fapi",
    b"/%2e%2e/admin",
    b"/%2E%2E/admin/",
    b"/%252e%252e/admin",
    b"/x%2f..%2fadmin",
    b"/x\\..\\admin",
    b"/admin%00",
    b"/admin/api/v1/tokens/..%5c..%5c..%5c..",
    b"/admin/api/v1/tokens/..\\..\\..\\..",
    b"/admin/api/v1/tokens/%252e%252e%252f",
    "/admin/api/v1/tokens/\u2025\uff0f".encode(),
    b"/admin/..",
    b"http://acme.localhost/admin/../x",
]
ADMIN_TRICKS = ADMIN_SPELLINGS + GUARDED_TRICKS


@pytest.mark.parametrize("path", ADMIN_SPELLINGS)
def test_admin_spellings_from_outside_are_403(asgi, path):
    result = asgi(EDGE, path)
    assert result.status == 403
    assert result.is_problem


@pytest.mark.parametrize("path", GUARDED_TRICKS)
def test_path_tricks_are_400_before_tenant_and_allowlist(asgi, path):
    looked_up = []

    async def by_slug(slug):
        looked_up.append(slug)
        return ACME

    async def allowlist(tenant):
        looked_up.append("allowlist")
        return []

    edge = make_edge(rate_limit_ip_burst=10_000, by_slug=by_slug, get_allowlist=allowlist)
    result = asgi(edge, path)
    assert result.status == 400
    assert result.is_problem and "request path" in result.json()["detail"]
    assert looked_up == []
    # From the office too: the guard does not depend on who asks.
    assert asgi(edge, path, client=("192.0.2.10", 1)).status == 400


@pytest.mark.parametrize("path", [b"/admin/", b"/admin/users"])
def test_admin_from_office_is_allowed(asgi, path):
    assert asgi(EDGE, path, client=("192.0.2.10", 1)).status == 200


@pytest.mark.parametrize(
    ("client", "xff"),
    [
        (("203.0.113.7", 1), "192.0.2.10"),  # untrusted peer claims to be the office
        (("203.0.113.7", 1), "192.0.2.10, 10.0.0.1"),
        (("10.0.0.1", 1), "192.0.2.10, 203.0.113.7"),  # trusted proxy appended the real client
        (("10.0.0.1", 1), "192.0.2.10,203.0.113.7:5555"),
        (("::ffff:10.0.0.1", 1), "192.0.2.10, [2001:db8::7]:443"),
    ],
)
def test_spoofed_forwarded_for_does_not_open_admin(asgi, client, xff):
    result = asgi(EDGE, "/admin/x", client=client, headers=[("X-Forwarded-For", xff)])
    assert result.status == 403


@pytest.mark.parametrize(
    ("client", "xff"),
    [
        (("10.0.0.1", 1), "192.0.2.10"),
        (("::ffff:10.0.0.1", 1), "::ffff:192.0.2.10"),
        (("10.0.0.1", 1), "garbage, 192.0.2.10, 10.0.0.2"),
    ],
)
def test_office_behind_trusted_proxy_is_allowed(asgi, client, xff):
    result = asgi(EDGE, "/admin/x", client=client, headers=[("X-Forwarded-For", xff)])
    assert result.status == 200
    assert result.json()["ip"] == "192.0.2.10"


def test_mapped_peer_address_is_ipv4(asgi):
    assert asgi(EDGE, "/whoami", client=("::ffff:198.51.100.3", 1)).json()["ip"] == "198.51.100.3"


def test_spoofed_forwarded_host_from_untrusted_peer_is_ignored(asgi):
    result = asgi(
        EDGE, "/whoami", host="nobody.localhost", headers=[("X-Forwarded-Host", "acme.localhost")]
    )
    assert result.status == 404


def test_forwarded_host_from_trusted_proxy_is_used(asgi):
    result = asgi(
        EDGE,
        "/whoami",
        host="gw.internal",
        client=("10.0.0.1", 1),
        headers=[("X-Forwarded-Host", "acme.localhost")],
    )
    assert result.json()["tenant"] == "acme"


@pytest.mark.parametrize(
    "host", ["ACME.LOCALHOST", "acme.localhost.", "acme.localhost:8080", "Acme.Localhost.:443"]
)
def test_host_variants_route(asgi, host):
    assert asgi(EDGE, "/whoami", host=host).json()["tenant"] == "acme"


@pytest.mark.parametrize(
    "host", ["nobody.localhost", "localhost", "[::1]:8080", "127.0.0.1", "evil.example"]
)
def test_unknown_hosts_are_identical_404s(asgi, host):
    result = asgi(EDGE, "/whoami", host=host)
    assert result.status == 404
    assert result.body == asgi(EDGE, "/admin", host="other.localhost").body


def test_missing_and_duplicate_host(asgi):
    assert asgi(EDGE, "/whoami", host=None).status == 400
    assert asgi(EDGE, "/whoami", headers=[("Host", "evil.localhost")]).status == 400


def test_absolute_form_targets(asgi):
    assert asgi(EDGE, b"http://acme.localhost/whoami").json()["tenant"] == "acme"
    assert asgi(EDGE, b"http://evil.localhost/whoami").status == 400
    assert asgi(EDGE, b"http://evil.localhost/whoami", host="evil.localhost").status == 404


def test_oversized_bodies(asgi):
    declared = asgi(EDGE, "/whoami", method="POST", headers=[("Content-Length", "5000")], body=[])
    streamed = asgi(EDGE, "/whoami", method="POST", body=[b"x" * 600, b"x" * 600])
    lying = asgi(
        EDGE, "/whoami", method="POST", headers=[("Content-Length", "10")], body=[b"x" * 1200]
    )
    assert [r.status for r in (declared, streamed, lying)] == [413, 413, 413]
    assert all(r.is_problem for r in (declared, streamed, lying))


def test_json_is_left_to_the_operations(asgi):
    # The edge only bounds the size; each operation parses per its declared body kind (and
    # error format), see test_gateway_operations.py.
    headers = [("Content-Type", "application/json")]
    deep = asgi(EDGE, "/whoami", method="POST", headers=headers, body=[b"[" * 400 + b"]" * 400])
    assert deep.status == 200


def test_rate_limit_per_client(asgi):
    edge = make_edge(rate_limit_ip_burst=2, rate_limit_ip_per_second=0.5)
    statuses = [asgi(edge, "/whoami", client=("198.51.100.9", 1)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = asgi(edge, "/whoami", client=("198.51.100.9", 1))
    assert refused.header("retry-after") == "2"
    assert asgi(edge, "/whoami", client=("198.51.100.10", 1)).status == 200


def test_security_txt_on_every_host(asgi):
    result = asgi(EDGE, "/.well-known/security.txt", host="nobody.example")
    assert result.status == 200
    assert b"Contact: mailto:security@ontrack.io" in result.body


def test_hsts_only_on_tls(asgi):
    assert asgi(EDGE, "/whoami").header("strict-transport-security") is None
    assert (
        asgi(EDGE, "/whoami", scheme="https")
        .header("strict-transport-security")
        .startswith("max-age=")
    )


def test_resolver_failure_is_a_problem_not_a_traceback(asgi):
    async def broken(host):
        raise ConnectionError("identity down at 10.9.9.9")

    async def get_allowlist(tenant):
        return []

    edge = build_edge(
        Starlette(), GatewaySettings(), resolve_tenant=broken, get_allowlist=get_allowlist
    )
    result = asgi(edge, "/whoami")
    assert result.status == 500
    assert result.is_problem
    assert b"10.9.9.9" not in result.body


def test_websockets_are_refused():
    import asyncio

    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/admin",
        "raw_path": b"/admin",
        "headers": [],
        "client": ("1.2.3.4", 1),
    }
    asyncio.run(EDGE(scope, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1008}]


ATTACKS = [{"path": p} for p in ADMIN_TRICKS] + [
    {"path": "/whoami", "host": None},
    {"path": "/whoami", "host": "\x00"},
    {"path": "/whoami", "host": "[::1"},
    {"path": b"/%ff%fe/../admin"},
    {"path": b"/" + b"%25" * 500},
    {"path": b"*"},
    {"path": b"\\admin"},
    {"path": b"http://[::1/x"},
    {"path": "/whoami", "headers": [("X-Forwarded-For", "\xff" * 100)], "client": ("10.0.0.1", 1)},
    {"path": "/whoami", "headers": [("X-Forwarded-Host", "[[[")], "client": ("10.0.0.1", 1)},
    {
        "path": "/whoami",
        "method": "POST",
        "headers": [("Content-Type", "application/json")],
        "body": [b'"' * 900],
    },
    {
        "path": "/whoami",
        "method": "POST",
        "headers": [("Content-Type", "application/json; charset=utf-16")],
        "body": [b"\xff\xfe["],
    },
    {"path": "/whoami", "method": "POST", "headers": [("Content-Length", "-1")]},
    {"path": "/whoami", "client": None},
    {"path": "/admin", "client": None},
    {"path": "/whoami", "method": "TRACE"},
]


@pytest.mark.parametrize("kwargs", ATTACKS)
def test_no_attack_produces_a_500_or_a_non_problem_error(asgi, kwargs):
    result = asgi(EDGE, **kwargs)
    assert result.status < 500
    if result.status >= 400:
        assert result.is_problem
