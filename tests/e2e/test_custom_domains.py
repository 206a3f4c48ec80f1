"""End to end: a custom domain routes nowhere until an operator verifies it, then routes
through the gateway to its tenant; unknown and unverified domains look alike."""

from __future__ import annotations

import json

import grpc
import pytest

from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import gateway_fixture, make_token  # noqa: F401 - fixtures
from tests.helpers import create_tenant, eventually, ontrack

pytestmark = pytest.mark.e2e


def resolve_code(channels, domain: str) -> grpc.StatusCode:
    stub = igrpc.TenantServiceStub(channels["identity"])
    try:
        stub.ResolveDomain(ipb.ResolveDomainRequest(domain=domain), timeout=5)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_a_domain_routes_only_once_verified(system, gateway, channels):
    slug = unique("cd")
    domain = f"portal.{slug}.example.com"
    tenant = create_tenant(channels, slug, domains=[domain])
    assert list(tenant.domains) == [] and list(tenant.unverified_domains) == [domain]
    _, token = make_token(channels, slug, "api:read")
    host = f"{domain}:{gateway.port}"

    # Unverified: identity and the gateway answer as for a domain nobody has.
    assert resolve_code(channels, domain) == grpc.StatusCode.NOT_FOUND
    assert resolve_code(channels, f"nobody.{slug}.example.com") == grpc.StatusCode.NOT_FOUND
    unverified = gateway.call("GET", "/api/v1/assets", None, token, host=host)
    unknown = gateway.call(
        "GET", "/api/v1/assets", None, token, host=f"nobody.{slug}.example.com:{gateway.port}"
    )
    assert unverified.status == unknown.status == 404
    assert unverified.body == unknown.body
    # The tenant's own subdomain works all along.
    assert gateway.call("GET", "/api/v1/assets", slug, token).status == 200

    r = ontrack(system, "tenant", "domain", "verify", slug, domain.upper() + ".")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["domains"] == [domain] and not shown.get("unverified_domains")
    assert resolve_code(channels, domain) == grpc.StatusCode.OK
    # The gateway caches the earlier "unknown" for a moment, then routes the domain.
    eventually(
        lambda: gateway.call("GET", "/api/v1/assets", None, token, host=host).status == 200,
        timeout=30,
    )
    again = ontrack(system, "tenant", "domain", "verify", slug, domain)  # idempotent
    assert again.returncode == 0 and json.loads(again.stdout)["domains"] == [domain]


def test_verify_refuses_what_it_cannot_verify_with_exit_2(system, channels):
    a, b = unique("va"), unique("vb")
    create_tenant(channels, a, domains=[f"{a}.example.com"])
    create_tenant(channels, b)
    cases = [
        (b, f"{a}.example.com"),  # another tenant's domain
        (a, f"other.{a}.example.com"),  # a domain the tenant does not have
        (unique("nx"), f"{a}.example.com"),  # no such tenant
        (a, "not a domain"),
        (a, "ｆｕｌｌ.example.com"),
        ("Bad_Slug", f"{a}.example.com"),
    ]
    for slug, domain in cases:
        r = ontrack(system, "tenant", "domain", "verify", slug, domain)
        assert r.returncode == 2, (slug, domain, r.stdout, r.stderr)
        assert r.stderr.strip()
    stub = igrpc.TenantServiceStub(channels["identity"])
    with pytest.raises(grpc.RpcError) as nul:
        stub.VerifyDomain(ipb.VerifyDomainRequest(slug=a, domain=f"{a}.example.com\x00"))
    assert nul.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert resolve_code(channels, f"{a}.example.com") == grpc.StatusCode.NOT_FOUND
