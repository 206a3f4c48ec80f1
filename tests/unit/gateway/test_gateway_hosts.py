import pytest
from starlette.responses import JSONResponse

from ontrackio.gateway.hosts import (
    TenantHostMiddleware,
    TenantInfo,
    classify_host,
    normalise_host,
    tenant_resolver,
)

ACME = TenantInfo("t-1", "acme")
GLOBEX = TenantInfo("t-2", "globex", tier="enterprise")
SUSPENDED = TenantInfo("t-3", "gone", suspended=True)
SLUGS = {"acme": ACME, "gone": SUSPENDED}
DOMAINS = {"assets.globex.example": GLOBEX}


async def by_slug(slug):
    return SLUGS.get(slug)


async def by_domain(domain):
    return DOMAINS.get(domain)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme.localhost", "acme.localhost"),
        ("ACME.LocalHost", "acme.localhost"),
        ("acme.localhost.", "acme.localhost"),
        ("acme.localhost:8080", "acme.localhost"),
        ("acme.localhost.:8080", "acme.localhost"),
        ("acme.localhost:", "acme.localhost"),
        ("[::1]:8080", "[::1]"),
        ("[0:0::1]", "[::1]"),
        ("192.0.2.1:80", "192.0.2.1"),
    ],
)
def test_normalise_host(raw, expected):
    assert normalise_host(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "acme.localhost:80x",
        "acme..localhost",
        "-acme.localhost",
        "a_b.localhost",
        "acme.localhost..",
        "::1",
        "[::1",
        "[zz::1]",
        "acme.localhost:123456",
        "ac me.localhost",
        "acmé.localhost",
        "a" * 64 + ".x",
    ],
)
def test_normalise_host_rejects_malformed(raw):
    assert normalise_host(raw) is None


def test_classify():
    assert classify_host("acme.localhost", "localhost").slug == "acme"
    assert classify_host("assets.globex.example", "localhost").slug is None
    for host in (
        "localhost",
        "a.localhost",
        "1acme.localhost",
        "acme-.localhost",
        "x.acme.localhost",
        "[::1]",
        "192.0.2.1",
        "intranet",
        "a" * 32 + ".localhost",
    ):
        assert classify_host(host, "localhost") is None, host


async def echo(scope, receive, send):
    state = scope["state"]
    body = {
        "tenant": state["tenant"].slug,
        "host": state["host"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
    }
    await JSONResponse(body)(scope, receive, send)


def make_app():
    resolve = tenant_resolver("localhost", by_slug=by_slug, by_custom_domain=by_domain)
    return TenantHostMiddleware(echo, base_domain="localhost", resolve_tenant=resolve)


def with_peer_trusted(app, trusted):
    async def wrapped(scope, receive, send):
        scope["state"] = {"peer_trusted": trusted}
        await app(scope, receive, send)

    return wrapped


@pytest.mark.parametrize(
    "host", ["acme.localhost", "ACME.LOCALHOST", "acme.localhost.", "acme.localhost:8080"]
)
def test_slug_hosts_route(asgi, host):
    assert asgi(make_app(), host=host).json()["tenant"] == "acme"


def test_custom_domain_routes(asgi):
    assert asgi(make_app(), host="Assets.Globex.Example:443").json()["tenant"] == "globex"


@pytest.mark.parametrize(
    "host",
    [
        "nobody.localhost",
        "gone.localhost",
        "localhost",
        "x.localhost",
        "a.b.localhost",
        "evil.example",
        "[::1]:8080",
        "127.0.0.1",
        "intranet",
    ],
)
def test_unknown_hosts_share_one_404_body(asgi, host):
    reference = asgi(make_app(), host="nobody.localhost")
    result = asgi(make_app(), host=host)
    assert result.status == 404
    assert result.is_problem
    assert result.body == reference.body
    assert host.split(":")[0].encode() not in result.body


@pytest.mark.parametrize("headers", [[], [("Host", "acme.localhost")]])
def test_missing_or_duplicate_host_is_400(asgi, headers):
    result = (
        asgi(make_app(), host=None, headers=headers)
        if not headers
        else asgi(make_app(), headers=headers)
    )
    assert result.status == 400
    assert result.is_problem


@pytest.mark.parametrize("host", ["acme.localhost:x", "ac me", "acme.localhost\x00", "[::1"])
def test_malformed_host_is_400(asgi, host):
    assert asgi(make_app(), host=host).status == 400


def test_absolute_form_matching_host_is_rewritten_to_origin_form(asgi):
    result = asgi(make_app(), b"http://ACME.localhost:8080/x%2Fy", host="acme.localhost")
    assert result.json()["path"] == "/x/y"
    assert result.json()["raw_path"] == "/x%2Fy"


@pytest.mark.parametrize(
    "target",
    [
        b"http://evil.localhost/x",
        b"https://globex.localhost/",
        b"http:///x",
        b"http://acme.localhost@evil.localhost/",
    ],
)
def test_absolute_form_with_other_authority_is_400(asgi, target):
    assert asgi(make_app(), target, host="acme.localhost").status == 400


@pytest.mark.parametrize("target", [b"acme.localhost:443", b"ftp://acme.localhost/", b"x"])
def test_odd_request_targets_are_400(asgi, target):
    assert asgi(make_app(), target).status == 400


def test_forwarded_host_ignored_from_untrusted_peer(asgi):
    app = with_peer_trusted(make_app(), False)
    result = asgi(
        app, host="acme.localhost", headers=[("X-Forwarded-Host", "assets.globex.example")]
    )
    assert result.json()["tenant"] == "acme"


def test_forwarded_host_used_from_trusted_peer_rightmost_wins(asgi):
    app = with_peer_trusted(make_app(), True)
    headers = [("X-Forwarded-Host", "acme.localhost, assets.globex.example")]
    result = asgi(app, host="internal.gateway", headers=headers)
    assert result.json()["tenant"] == "globex"


def test_forwarded_host_garbage_from_trusted_peer_is_400(asgi):
    app = with_peer_trusted(make_app(), True)
    assert asgi(app, headers=[("X-Forwarded-Host", "bad host")]).status == 400


def test_resolver_not_called_for_impossible_hosts(asgi):
    calls = []

    async def resolve(host):
        calls.append(host)

    app = TenantHostMiddleware(echo, base_domain="localhost", resolve_tenant=resolve)
    for host in ("x.localhost", "localhost", "[::1]", "10.0.0.1", "a.b.localhost"):
        asgi(app, host=host)
    assert calls == []


@pytest.mark.parametrize(
    "raw",
    [
        "\u212acme.localhost",  # Kelvin sign: str.lower() makes it an ASCII "k"
        "\u0130acme.localhost",
        "\xa0acme.localhost",  # NBSP and NEL: str.strip() would eat them
        "acme.localhost\x85",
        "acme.localhost\u3000",
        "ａcme.localhost",
    ],
)
def test_non_ascii_hosts_are_malformed_not_folded(raw):
    assert normalise_host(raw) is None
