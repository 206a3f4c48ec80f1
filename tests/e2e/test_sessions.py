"""End to end through the gateway: session cookies, roles, CSRF, and sessions ending
everywhere (logout, admin revocation, deactivation, role change, timeouts)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from ontrackio.gateway.auth.session import SESSION_COOKIE
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.identity.v1 import sessions_pb2 as spb
from tests.conftest import unique
from tests.e2e.sessions_kit import create_user, seed_session, sessions_stub
from tests.e2e.test_gateway_kit import gateway_fixture  # noqa: F401 - fixture
from tests.helpers import create_tenant, eventually, md

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tenant(channels):
    slug = unique("se")
    create_tenant(channels, slug)
    return slug


def get(gateway, slug, browser, path):
    return gateway.call("GET", path, slug, headers=browser.headers(gateway, slug))


def refused_everywhere(gateway, slug, browser, path="/api/v1/session", tries=6):
    """Every new connection (any worker) answers 401 for the cookie."""
    return all(get(gateway, slug, browser, path).status == 401 for _ in range(tries))


def test_who_am_i(gateway, channels, settings, tenant):
    user = create_user(channels, tenant, "admin", "auditor")
    browser = seed_session(settings, tenant, user)
    r = get(gateway, tenant, browser, "/api/v1/session")
    assert r.status == 200, r
    body = r.json()
    assert body["user"]["id"] == user and body["roles"] == ["admin", "auditor"]
    assert body["method"] == "password" and body["mfa_source"] == "none"
    assert body["csrf_token"] == browser.csrf
    assert r.headers["cache-control"] == "no-store"
    assert gateway.call("GET", "/api/v1/session", tenant).status == 401


def test_roles_decide_what_a_session_may_do(gateway, channels, settings, tenant):
    member = seed_session(settings, tenant, create_user(channels, tenant, "member"))
    admin = seed_session(settings, tenant, create_user(channels, tenant, "admin"))
    auditor = seed_session(settings, tenant, create_user(channels, tenant, "auditor"))
    assert get(gateway, tenant, member, "/api/v1/users").status == 200
    assert get(gateway, tenant, member, "/admin/api/v1/tokens").status == 403
    assert get(gateway, tenant, member, "/api/v1/audit").status == 403
    assert get(gateway, tenant, auditor, "/api/v1/audit").status == 200
    assert get(gateway, tenant, auditor, "/admin/api/v1/audit").status == 403
    assert get(gateway, tenant, admin, "/admin/api/v1/tokens").status == 200
    # An auditor changes nothing.
    r = gateway.call(
        "POST",
        "/api/v1/assets",
        tenant,
        body={"name": "x"},
        headers=auditor.headers(gateway, tenant, unsafe=True),
    )
    assert r.status == 403, r


def test_unsafe_requests_need_origin_and_csrf_token(gateway, channels, settings, tenant):
    admin = seed_session(settings, tenant, create_user(channels, tenant, "admin"))
    body = {"name": "from the browser", "scopes": ["api:read"], "expires_in_seconds": 60}
    cookie_only = admin.headers(gateway, tenant)
    r = gateway.call("POST", "/admin/api/v1/tokens", tenant, body=body, headers=cookie_only)
    assert r.status == 403, r
    evil = [*cookie_only, ("Origin", "http://evil.example"), ("X-CSRF-Token", admin.csrf)]
    r = gateway.call("POST", "/admin/api/v1/tokens", tenant, body=body, headers=evil)
    assert r.status == 403, r
    ok = admin.headers(gateway, tenant, unsafe=True)
    r = gateway.call("POST", "/admin/api/v1/tokens", tenant, body=body, headers=ok)
    assert r.status == 201, r
    assert r.json()["token"]["created_by"] == f"user:{admin.user_id}"


def test_identity_checks_the_role_too(channels, tenant):
    """A member acting through any edge cannot change roles: identity looks them up itself."""
    import grpc

    member = create_user(channels, tenant, "member")
    target = create_user(channels, tenant, "member")
    stub = sessions_stub(channels)
    with pytest.raises(grpc.RpcError) as err:
        stub.SetUserRoles(
            spb.SetUserRolesRequest(user_id=target, roles=["admin"]),
            metadata=[*md(tenant), ("x-ontrack-actor", f"user:{member}")],
            timeout=10,
        )
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    admin = create_user(channels, tenant, "admin")
    with pytest.raises(grpc.RpcError) as err:  # only owners make owners
        stub.SetUserRoles(
            spb.SetUserRolesRequest(user_id=target, roles=["owner"]),
            metadata=[*md(tenant), ("x-ontrack-actor", f"user:{admin}")],
            timeout=10,
        )
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_logout_ends_the_session_on_every_worker(gateway, channels, settings, tenant):
    browser = seed_session(settings, tenant, create_user(channels, tenant, "member"))
    for _ in range(4):  # warm every worker's cache
        assert get(gateway, tenant, browser, "/api/v1/session").status == 200
    r = gateway.call(
        "POST", "/auth/logout", tenant, headers=browser.headers(gateway, tenant, unsafe=True)
    )
    assert r.status == 204, r
    assert f"{SESSION_COOKIE}=" in r.headers["set-cookie"] and "Max-Age=0" in r.headers[
        "set-cookie"
    ].replace("max-age", "Max-Age")
    assert eventually(lambda: refused_everywhere(gateway, tenant, browser), timeout=5)


def test_admin_revokes_a_users_sessions(gateway, channels, settings, tenant):
    admin = seed_session(settings, tenant, create_user(channels, tenant, "admin"))
    user = create_user(channels, tenant, "member")
    a, b = seed_session(settings, tenant, user), seed_session(settings, tenant, user)
    for _ in range(4):
        assert get(gateway, tenant, a, "/api/v1/session").status == 200
        assert get(gateway, tenant, b, "/api/v1/session").status == 200
    listed = get(gateway, tenant, admin, f"/admin/api/v1/sessions?user_id={user}").json()
    assert {s["id"] for s in listed["items"]} == {a.session_id, b.session_id}
    r = gateway.call(
        "DELETE",
        f"/admin/api/v1/users/{user}/sessions",
        tenant,
        headers=admin.headers(gateway, tenant, unsafe=True),
    )
    assert r.status == 200 and r.json() == {"revoked": 2}, r
    assert eventually(lambda: refused_everywhere(gateway, tenant, a), timeout=5)
    assert refused_everywhere(gateway, tenant, b)
    assert get(gateway, tenant, admin, "/api/v1/session").status == 200


def test_deactivation_and_role_change_end_sessions(gateway, channels, settings, tenant):
    leaver = create_user(channels, tenant, "member")
    mover = create_user(channels, tenant, "member")
    gone, moved = seed_session(settings, tenant, leaver), seed_session(settings, tenant, mover)
    assert get(gateway, tenant, gone, "/api/v1/session").status == 200
    assert get(gateway, tenant, moved, "/api/v1/session").status == 200
    igrpc.UserServiceStub(channels["identity"]).DeactivateUser(
        ipb.GetUserRequest(id=leaver), metadata=md(tenant), timeout=10
    )
    sessions_stub(channels).SetUserRoles(
        spb.SetUserRolesRequest(user_id=mover, roles=["admin"]), metadata=md(tenant), timeout=10
    )
    assert eventually(lambda: refused_everywhere(gateway, tenant, gone), timeout=5)
    assert eventually(lambda: refused_everywhere(gateway, tenant, moved), timeout=5)


def test_timeouts(gateway, channels, settings, tenant):
    user = create_user(channels, tenant, "member")
    idle = seed_session(settings, tenant, user, idle=timedelta(seconds=-1))
    old = seed_session(settings, tenant, user, absolute=timedelta(seconds=-1))
    assert get(gateway, tenant, idle, "/api/v1/session").status == 401
    assert get(gateway, tenant, old, "/api/v1/session").status == 401
    # Use moves the idle expiry on (the first use on a worker touches the session).
    short = seed_session(settings, tenant, user, idle=timedelta(seconds=3))
    assert get(gateway, tenant, short, "/api/v1/session").status == 200
    time.sleep(4)
    assert get(gateway, tenant, short, "/api/v1/session").status == 200


def test_a_cookie_works_for_its_own_tenant_only(gateway, channels, settings, tenant):
    other = unique("so")
    create_tenant(channels, other)
    browser = seed_session(settings, tenant, create_user(channels, tenant, "admin"))
    assert get(gateway, other, browser, "/api/v1/session").status == 401
    forged = browser.cookie[:-4] + ("AAAA" if not browser.cookie.endswith("AAAA") else "BBBB")
    r = gateway.call(
        "GET", "/api/v1/session", tenant, headers=[("Cookie", f"{SESSION_COOKIE}={forged}")]
    )
    assert r.status == 401


def test_sign_in_policy(gateway, channels, settings, tenant):
    owner = create_user(channels, tenant, "owner")
    admin = seed_session(settings, tenant, create_user(channels, tenant, "admin"))
    path = "/admin/api/v1/signin-policy"
    assert get(gateway, tenant, admin, path).json()["sso_required"] is False
    unsafe = admin.headers(gateway, tenant, unsafe=True)
    r = gateway.call("PUT", path, tenant, body={"sso_required": True}, headers=unsafe)
    assert r.status == 400 and "break-glass" in r.json()["detail"], r
    r = gateway.call(
        "PUT",
        path,
        tenant,
        body={"sso_required": True, "break_glass_users": [owner], "idle_timeout_seconds": 900},
        headers=unsafe,
    )
    assert r.status == 200, r
    assert r.json()["break_glass_users"] == [owner] and r.json()["idle_timeout_seconds"] == 900
    r = gateway.call("PUT", path, tenant, body={"sso_required": False}, headers=unsafe)
    assert r.status == 200 and r.json()["idle_timeout_seconds"] == 900
