from ipaddress import ip_address, ip_network

import pytest
from prometheus_client import REGISTRY
from starlette.responses import PlainTextResponse

from ontrackio.gateway.allowlist import (
    AdminAllowlistMiddleware,
    InvalidCIDRs,
    is_allowed,
    parse_cidrs,
    would_lock_out,
)
from ontrackio.gateway.hosts import TenantInfo


def test_parse_cidrs_accepts_v4_v6_and_bare_addresses():
    assert parse_cidrs(["10.0.0.0/8", " 2001:db8::/32 ", "192.0.2.1"]) == [
        ip_network("10.0.0.0/8"),
        ip_network("2001:db8::/32"),
        ip_network("192.0.2.1/32"),
    ]


def test_parse_cidrs_names_every_invalid_entry():
    with pytest.raises(InvalidCIDRs) as info:
        parse_cidrs(["10.0.0.0/8", "nope", "10.0.0.1/8", "", "1.2.3.4/33"])
    assert [entry for entry, _ in info.value.invalid] == ["nope", "10.0.0.1/8", "", "1.2.3.4/33"]
    for entry in ("'nope'", "'10.0.0.1/8'", "'1.2.3.4/33'"):
        assert entry in str(info.value)


def test_mapped_ipv6_networks_become_ipv4():
    assert parse_cidrs(["::ffff:10.0.0.0/104"]) == [ip_network("10.0.0.0/8")]


def test_empty_list_means_no_restriction():
    assert is_allowed(ip_address("198.51.100.1"), [])
    assert is_allowed(None, [])


def test_membership_with_mapped_and_unknown_addresses():
    cidrs = parse_cidrs(["192.0.2.0/24", "2001:db8::/32"])
    assert is_allowed(ip_address("::ffff:192.0.2.9"), cidrs)
    assert is_allowed(ip_address("2001:db8::5"), cidrs)
    assert not is_allowed(ip_address("198.51.100.1"), cidrs)
    assert not is_allowed(None, cidrs)


def test_would_lock_out():
    caller = ip_address("192.0.2.9")
    assert would_lock_out(parse_cidrs(["198.51.100.0/24"]), caller)
    assert not would_lock_out(parse_cidrs(["192.0.2.0/24"]), caller)
    assert not would_lock_out([], caller)


TENANT = TenantInfo("t-1", "acme", tier="enterprise")


def make_app(cidrs, tenant=TENANT, client_ip="203.0.113.7"):
    async def get_allowlist(t):
        assert t is tenant
        return parse_cidrs(cidrs)

    inner = AdminAllowlistMiddleware(PlainTextResponse("admin ok"), get_allowlist=get_allowlist)

    async def with_state(scope, receive, send):
        scope["state"] = {
            "tenant": tenant,
            "client_ip": ip_address(client_ip) if client_ip else None,
        }
        await inner(scope, receive, send)

    return with_state


def denied_count(tier):
    return (
        REGISTRY.get_sample_value("ontrack_gateway_admin_denied_total", {"tenant_tier": tier})
        or 0.0
    )


@pytest.mark.parametrize(
    "path", [b"/admin", b"/ADMIN/", b"//admin", b"/%61dmin", b"/x/../admin", b"/admin%2fapi"]
)
def test_denied_outside_allowlist(asgi, path):
    before = denied_count("enterprise")
    result = asgi(make_app(["192.0.2.0/24"]), path)
    assert result.status == 403
    assert result.is_problem
    assert denied_count("enterprise") == before + 1


def test_allowed_inside_allowlist(asgi):
    assert asgi(make_app(["203.0.113.0/24"]), "/admin/x").body == b"admin ok"


def test_non_admin_paths_not_checked(asgi):
    assert asgi(make_app(["192.0.2.0/24"]), "/assets").body == b"admin ok"


def test_empty_allowlist_allows(asgi):
    assert asgi(make_app([]), "/admin").status == 200


def test_missing_tenant_fails_closed(asgi):
    result = asgi(make_app([], tenant=None), "/admin")
    assert result.status == 403
    assert denied_count("other") >= 1


def test_unknown_client_is_denied_when_list_is_set(asgi):
    assert asgi(make_app(["0.0.0.0/0"], client_ip=None), "/admin").status == 403
