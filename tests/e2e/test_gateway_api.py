"""End to end through the gateway: routes, scopes, pagination, tokens, allowlist, audit, CLI."""

from __future__ import annotations

import json
import time

import pytest

from ontrackio.identity.v1 import access_pb2 as apb
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import (  # noqa: F401 - fixtures
    Conn,
    access_stub,
    gateway_fixture,
    make_token,
    new_source,
    raw,
    request_bytes,
    tenant_a_fixture,
    tenant_b_fixture,
)
from tests.helpers import create_tenant, eventually, md, ontrack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def full(channels, tenant_a):
    return make_token(channels, tenant_a, "api:read", "api:write", "admin")


def test_assets_create_get_and_list_with_pagination(gateway, tenant_a, full):
    _, token = full
    made = []
    for i in range(3):
        r = gateway.call(
            "POST", "/api/v1/assets", tenant_a, token, {"name": f"laptop {i}", "kind": "hardware"}
        )
        assert r.status == 201, r
        assert r.headers["location"] == f"/api/v1/assets/{r.json()['id']}"
        made.append(r.json()["id"])
    got = gateway.call("GET", f"/api/v1/assets/{made[0]}", tenant_a, token)
    assert got.status == 200 and got.json()["name"] == "laptop 0"
    seen, page_token = [], ""
    while True:
        r = gateway.call(
            "GET", f"/api/v1/assets?page_size=2&page_token={page_token}", tenant_a, token
        )
        assert r.status == 200, r
        assert len(r.json()["items"]) <= 2
        seen += [a["id"] for a in r.json()["items"]]
        page_token = r.json()["next_page_token"]
        if not page_token:
            break
    assert set(made) <= set(seen) and len(seen) == len(set(seen))


def test_bad_input_is_a_400_problem_never_a_500(gateway, tenant_a, full):
    _, token = full
    cases = [
        ("POST", "/api/v1/assets", {"name": "x", "kind": "spaceship"}),
        ("POST", "/api/v1/assets", {"kind": "hardware"}),
        ("POST", "/api/v1/assets", {"name": "x", "kind": "saas", "extra": 1}),
        ("POST", "/api/v1/assets", [1, 2]),
        ("GET", "/api/v1/assets?page_size=lots", None),
        ("GET", "/api/v1/assets?page_size=501", None),
        ("GET", "/api/v1/assets?page_token=forged", None),
        ("GET", "/api/v1/assets/not-a-uuid", None),
    ]
    for method, target, body in cases:
        r = gateway.call(method, target, tenant_a, token, body)
        assert r.status == 400, (target, body, r)
        assert r.headers["content-type"] == "application/problem+json"
    missing = gateway.call(
        "GET", "/api/v1/assets/00000000-0000-4000-8000-000000000000", tenant_a, token
    )
    assert missing.status == 404 and missing.json()["detail"] == "asset not found"


def test_users_list_and_get(gateway, channels, tenant_a, full):
    _, token = full
    users = igrpc.UserServiceStub(channels["identity"])
    u = users.CreateUser(
        ipb.CreateUserRequest(email=f"{unique()}@example.com", display_name="Ada"),
        metadata=md(tenant_a),
    )
    r = gateway.call("GET", "/api/v1/users?page_size=500", tenant_a, token)
    assert r.status == 200 and u.id in [x["id"] for x in r.json()["items"]]
    one = gateway.call("GET", f"/api/v1/users/{u.id}", tenant_a, token)
    assert one.status == 200 and one.json()["display_name"] == "Ada"


def test_scopes_are_enforced(gateway, channels, tenant_a):
    _, reader = make_token(channels, tenant_a, "api:read")
    assert gateway.call("GET", "/api/v1/assets", tenant_a, reader).status == 200
    denied = gateway.call("POST", "/api/v1/assets", tenant_a, reader, {"name": "x", "kind": "saas"})
    assert denied.status == 403 and "api:write" in denied.json()["detail"]
    assert gateway.call("GET", "/admin/api/v1/tokens", tenant_a, reader).status == 403
    _, scim = make_token(channels, tenant_a, "scim")
    assert gateway.call("GET", "/api/v1/assets", tenant_a, scim).status == 403


def test_every_401_has_the_same_body(gateway, channels, tenant_a, tenant_b):
    _, of_b = make_token(channels, tenant_b, "api:read")
    _, ok = make_token(channels, tenant_a, "api:read")
    wrong_secret = ok[:-4] + ("AAAA" if not ok.endswith("AAAA") else "BBBB")
    forged_id = "otk_" + "0" * 24 + ok[28:]
    bodies = set()
    for headers in (
        [],
        [("Authorization", "Basic dXNlcjpwYXNz")],
        [("Authorization", "Bearer nonsense")],
        [("Authorization", f"Bearer {of_b}")],
        [("Authorization", f"Bearer {wrong_secret}")],
        [("Authorization", f"Bearer {forged_id}")],
        [("Authorization", f"Bearer {ok}"), ("Authorization", f"Bearer {ok}")],
    ):
        r = gateway.call("GET", "/api/v1/assets", tenant_a, headers=headers)
        assert r.status == 401, (headers, r)
        assert r.headers["www-authenticate"].startswith("Bearer")
        bodies.add(r.body)
    assert len(bodies) == 1


def test_expired_and_out_of_cidr_tokens_fail(gateway, channels, tenant_a):
    made = access_stub(channels).CreateToken(
        apb.CreateTokenRequest(name="e2e", scopes=["api:read"], expires_in_seconds=1),
        metadata=md(tenant_a),
        timeout=10,
    )
    short, expires_at = made.secret, made.token.expires_at.ToNanoseconds() / 1e9
    assert gateway.call("GET", "/api/v1/assets", tenant_a, short).status == 200
    # Time passing is the behaviour here: sleep until the token's own expiry (the gateway
    # runs on this machine's clock), then the very next request must fail: no retrying, as
    # the gateway checks the expiry on the record it caches for TOKEN_CACHE_SECONDS (5 s).
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    assert gateway.call("GET", "/api/v1/assets", tenant_a, short).status == 401
    _, elsewhere = make_token(channels, tenant_a, "api:read", cidrs=["10.0.0.0/8"])
    assert gateway.call("GET", "/api/v1/assets", tenant_a, elsewhere).status == 401
    # Claiming to be inside the CIDR does not help: the peer is not a trusted proxy.
    spoofed = gateway.call(
        "GET", "/api/v1/assets", tenant_a, elsewhere, headers=[("X-Forwarded-For", "10.1.2.3")]
    )
    assert spoofed.status == 401
    _, loopback = make_token(channels, tenant_a, "api:read", cidrs=["127.0.0.0/8"])
    assert gateway.call("GET", "/api/v1/assets", tenant_a, loopback).status == 200


def test_last_use_is_recorded(gateway, channels, tenant_a):
    token_id, token = make_token(channels, tenant_a, "api:read")
    source = new_source()
    assert gateway.call("GET", "/api/v1/assets", tenant_a, token, source=source).status == 200

    def used():
        for t in (
            access_stub(channels).ListTokens(apb.ListTokensRequest(), metadata=md(tenant_a)).tokens
        ):
            if t.id == token_id and t.HasField("last_used_at"):
                return t
        return None

    assert eventually(used, timeout=5).last_used_address == source


def test_per_token_rate_limit_answers_429_with_retry_after(gateway, channels, tenant_a):
    _, token = make_token(channels, tenant_a, "api:read")
    statuses = []
    # One connection (one worker), one address: the token's burst (20) runs out before the
    # address's (40).
    conn = Conn(gateway.port, new_source())
    for _ in range(32):
        r = conn.send(
            "GET",
            "/api/v1/assets?page_size=1",
            gateway.host(tenant_a),
            [("Authorization", f"Bearer {token}")],
        )
        statuses.append(r.status)
        if r.status == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.headers["content-type"] == "application/problem+json"
    conn.close()
    assert 429 in statuses and set(statuses) <= {200, 429}
    assert statuses.index(429) >= 19


def test_admin_tokens_create_list_revoke(gateway, channels, tenant_a, full):
    admin_id, admin = full
    r = gateway.call(
        "POST",
        "/admin/api/v1/tokens",
        tenant_a,
        admin,
        {"name": "ci", "scopes": ["api:read"], "expires_in_seconds": 3600},
    )
    assert r.status == 201, r
    assert r.headers["cache-control"] == "no-store"
    new_id, secret = r.json()["token"]["id"], r.json()["secret"]
    assert secret.startswith(f"otk_{new_id}_")
    assert r.json()["token"]["created_by"] == f"token:{admin_id}"
    listed = gateway.call("GET", "/admin/api/v1/tokens", tenant_a, admin)
    assert new_id in [t["id"] for t in listed.json()["items"]]
    assert "secret" not in listed.body.decode() and secret not in listed.body.decode()
    assert gateway.call("GET", "/api/v1/assets", tenant_a, secret).status == 200
    gone = gateway.call("DELETE", f"/admin/api/v1/tokens/{new_id}", tenant_a, admin)
    assert gone.status == 200 and gone.json()["revoked_at"]
    assert gateway.call("GET", "/api/v1/assets", tenant_a, secret).status == 401
    bad = gateway.call(
        "POST",
        "/admin/api/v1/tokens",
        tenant_a,
        admin,
        {"scopes": ["api:read"], "cidrs": ["10.0.0.1/8", "banana"]},
    )
    assert bad.status == 400 and "banana" in bad.json()["detail"]


def test_allowlist_lockout_guard_and_audit(gateway, channels):
    slug = unique("gl")
    create_tenant(channels, slug)
    admin_id, admin = make_token(channels, slug, "admin")
    inside, outside = "127.0.77.5", "127.0.78.5"
    empty = gateway.call("GET", "/admin/api/v1/allowlist", slug, admin, source=inside)
    assert empty.status == 200 and empty.json()["cidrs"] == []
    invalid = gateway.call(
        "PUT",
        "/admin/api/v1/allowlist",
        slug,
        admin,
        {"cidrs": ["127.0.77.0/24", "10.0.0.1/8", "nope"]},
        source=inside,
    )
    assert invalid.status == 400
    assert invalid.json()["invalid_cidrs"] == ["10.0.0.1/8", "nope"]
    lockout = gateway.call(
        "PUT", "/admin/api/v1/allowlist", slug, admin, {"cidrs": ["192.0.2.0/24"]}, source=inside
    )
    assert lockout.status == 409 and "127.0.77.5" in lockout.json()["detail"]
    ok = gateway.call(
        "PUT", "/admin/api/v1/allowlist", slug, admin, {"cidrs": ["127.0.77.0/24"]}, source=inside
    )
    assert ok.status == 200 and ok.json()["cidrs"] == ["127.0.77.0/24"]
    # Every worker learns of the change at once (event), so the outsider is refused now.
    before = gateway.scrape()
    for _ in range(4):
        r = gateway.call("GET", "/admin/api/v1/allowlist", slug, admin, source=outside)
        assert r.status == 403 and r.headers["content-type"] == "application/problem+json"
    # Each refusal is counted once, under the tenant's tier (the series must exist now).
    after = gateway.scrape()
    assert after.rise(before, "ontrack_gateway_admin_denied_total", tenant_tier="business") == 4
    # Non-admin paths are not restricted by the admin allowlist.
    _, reader = make_token(channels, slug, "api:read")
    assert gateway.call("GET", "/api/v1/assets", slug, reader, source=outside).status == 200
    confirmed = gateway.call(
        "PUT",
        "/admin/api/v1/allowlist",
        slug,
        admin,
        {"cidrs": ["192.0.2.0/24"], "confirm_lockout": True},
        source=inside,
    )
    assert confirmed.status == 200
    assert gateway.call("GET", "/admin/api/v1/allowlist", slug, admin, source=inside).status == 403
    audit = (
        access_stub(channels)
        .ListAccessAudit(apb.ListAccessAuditRequest(limit=10), metadata=md(slug))
        .entries
    )
    sets = [e for e in audit if e.action == "allowlist.set"]
    assert len(sets) == 2  # refused changes are not applied, so not logged as changes
    latest = sets[0]
    assert latest.actor == f"token:{admin_id}" and latest.address == inside
    assert json.loads(latest.old_json) == {"cidrs": ["127.0.77.0/24"]}
    assert json.loads(latest.new_json) == {"cidrs": ["192.0.2.0/24"]}
    assert latest.at.seconds > 0


def test_cli_tokens_and_allowlist(system, gateway, tenant_b):
    made = ontrack(
        system,
        "token",
        "create",
        "--tenant",
        tenant_b,
        "--scope",
        "api:read",
        "--cidr",
        "127.0.0.0/8",
        "--expires-in",
        "30d",
    )
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    token_id, secret = shown["token"]["id"], shown["secret"]
    assert gateway.call("GET", "/api/v1/assets", tenant_b, secret).status == 200
    listed = json.loads(ontrack(system, "token", "list", "--tenant", tenant_b).stdout)
    assert token_id in [t["id"] for t in listed]
    assert ontrack(system, "token", "revoke", "--tenant", tenant_b, token_id).returncode == 0
    assert gateway.call("GET", "/api/v1/assets", tenant_b, secret).status == 401
    bad = ontrack(
        system,
        "token",
        "create",
        "--tenant",
        tenant_b,
        "--scope",
        "api:read",
        "--expires-in",
        "soon",
    )
    assert bad.returncode == 2 and "soon" in bad.stderr

    refused = ontrack(system, "allowlist", "set", "--tenant", tenant_b, "10.0.0.0/8", "300.1.1.1")
    assert refused.returncode == 2 and "300.1.1.1" in refused.stderr
    assert (
        ontrack(system, "allowlist", "set", "--tenant", tenant_b, "127.0.0.0/8", "::1").returncode
        == 0
    )
    now = json.loads(ontrack(system, "allowlist", "show", "--tenant", tenant_b).stdout)
    assert now["cidrs"] == ["127.0.0.0/8", "::1/128"] and now["updated_by"].startswith("cli:")
    assert ontrack(system, "allowlist", "set", "--tenant", tenant_b, "--clear").returncode == 0
    unknown = ontrack(system, "token", "list", "--tenant", "nosuchtenant")
    assert unknown.returncode == 2


def _create_asset_calls(after, before) -> float:
    """How many CreateAsset calls the gateway made between two scrapes."""
    return after.rise(
        before, "ontrack_gateway_upstream_calls_total", service="asset", method="CreateAsset"
    )


def test_nul_and_lone_surrogates_are_400_and_never_reach_a_service(gateway, tenant_a, full):
    _, token = full
    name = unique("nul")
    before = gateway.scrape()
    cases = [
        (rb'{"name": "%s\u0000b", "kind": "hardware"}' % name.encode(), "NUL"),
        (rb'{"name": "\ud800", "kind": "hardware"}', "surrogate"),
        (rb'{"name": "x", "kind": "hardware", "\udfff": 1}', "surrogate"),
        (rb'{"name": "a\udc00b\u0000", "kind": "saas"}', "surrogate"),
    ]
    for body, words in cases:
        r = gateway.call("POST", "/api/v1/assets", tenant_a, token, body)
        assert r.status == 400, (body, r)
        assert r.headers["content-type"] == "application/problem+json"
        assert words in r.json()["detail"]
    refused = gateway.scrape()
    listed = gateway.call("GET", "/api/v1/assets?page_size=500", tenant_a, token)
    assert name not in listed.body.decode()
    # a paired surrogate is an ordinary character, stored and returned as such
    ok = gateway.call(
        "POST", "/api/v1/assets", tenant_a, token, rb'{"name": "\ud83d\ude00", "kind": "saas"}'
    )
    assert ok.status == 201 and ok.json()["name"] == "\U0001f600"
    # Positive control: the counter does count this POST when it reaches inventory...
    after = gateway.scrape()
    assert _create_asset_calls(after, refused) == 1
    # ...and over the whole test that POST is the only call: the refused ones never left the
    # gateway (no service, no SQL).
    assert _create_asset_calls(after, before) == 1


def test_nul_in_query_and_path_parameters_is_400(gateway, tenant_a, full):
    _, token = full
    for target in (
        "/api/v1/assets?page_token=a%00b",
        "/api/v1/users?page_token=%00",
        "/api/v1/assets/00000000-0000-4000-8000-00000000000%00",
        "/admin/api/v1/tokens?include_revoked=%00",
    ):
        r = gateway.call("GET", target, tenant_a, token)
        assert r.status == 400, (target, r)
        assert r.headers["content-type"] == "application/problem+json"


def test_body_media_types(gateway, tenant_a, full):
    _, token = full
    host = gateway.host(tenant_a)
    auth = ("Authorization", f"Bearer {token}")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = raw(
            gateway.port,
            request_bytes(
                "POST",
                "/api/v1/assets",
                host,
                [auth, ("Content-Type", content_type)],
                b'{"name": "x", "kind": "saas"}',
                close=True,
            ),
        )
        assert r.status == 415, (content_type, r)
        assert r.headers["content-type"] == "application/problem+json"
    empty = raw(
        gateway.port,
        request_bytes(
            "POST", "/api/v1/assets", host, [auth, ("Content-Type", "application/json")], close=True
        ),
    )
    assert empty.status == 400 and "empty" in empty.json()["detail"]


def test_admin_operations_refuse_outsiders_however_the_path_is_spelled(gateway, channels):
    slug = unique("gr")
    create_tenant(channels, slug)
    _, admin = make_token(channels, slug, "admin")
    inside, outside = "127.0.79.5", "127.0.80.5"
    ok = gateway.call(
        "PUT", "/admin/api/v1/allowlist", slug, admin, {"cidrs": ["127.0.79.0/24"]}, source=inside
    )
    assert ok.status == 200, ok
    spellings = [
        "/admin/api/v1/tokens",
        "/admin/api/v1/tokens/",
        "//admin/api/v1/tokens",
        "/%61dmin/api/v1/tokens",
        "/ADMIN/api/v1/tokens",
        "/admin/api/v1/tokens/0123456789abcdef01234567",
        "/admin/api/v1/allowlist",
    ]
    for target in spellings:
        refused = gateway.call("GET", target, slug, admin, source=outside)
        assert refused.status == 403, (target, refused)
        assert refused.headers["content-type"] == "application/problem+json"
    # Traversal-shaped spellings never get as far: the path guard refuses them for anyone.
    for target in ("/api/../admin/api/v1/tokens", "/admin%2fapi/v1/tokens"):
        for source in (outside, inside):
            refused = gateway.call("GET", target, slug, admin, source=source)
            assert refused.status == 400, (target, refused)
    assert gateway.call("GET", "/admin/api/v1/tokens", slug, admin, source=inside).status == 200
    # Refused before the token is even looked at: no token, same 403.
    assert gateway.call("GET", "/admin/api/v1/tokens", slug, source=outside).status == 403
