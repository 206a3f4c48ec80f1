"""The gRPC contract of the running api processes: tenant metadata, precise status codes,
health, reflection, pagination."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ontrackio.core.db.clusters import Clusters
from ontrackio.core.v1 import core_pb2, core_pb2_grpc
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.inventory.v1 import inventory_pb2 as apb
from ontrackio.inventory.v1 import inventory_pb2_grpc as agrpc
from tests.conftest import unique
from tests.helpers import create_tenant, md


@pytest.fixture(scope="module")
def tenant(channels):
    slug = unique("g")
    create_tenant(channels, slug)
    return slug


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


@pytest.mark.parametrize("service", ["identity", "inventory", "privacy", "evidence"])
def test_tenant_metadata_is_required_and_checked(channels, tenant, service):
    ping = core_pb2_grpc.DiagnosticsServiceStub(channels[service]).Ping
    req = core_pb2.PingRequest(payload=b"x")
    assert code_of(lambda: ping(req, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        code_of(lambda: ping(req, metadata=md("Bad Slug!"), timeout=5))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(lambda: ping(req, metadata=md(unique("nx")), timeout=5))
        == grpc.StatusCode.NOT_FOUND
    )
    reply = ping(req, metadata=md(tenant), timeout=5)
    assert (reply.payload, reply.tenant, reply.service) == (b"x", tenant, service)


def test_domain_errors_map_to_precise_codes(channels, tenant):
    users = igrpc.UserServiceStub(channels["identity"])
    assets = agrpc.AssetServiceStub(channels["inventory"])
    m = md(tenant)
    cases = {
        grpc.StatusCode.INVALID_ARGUMENT: [
            lambda: users.CreateUser(
                ipb.CreateUserRequest(email="not-an-email"), metadata=m, timeout=5
            ),
            lambda: users.GetUser(ipb.GetUserRequest(id="nope"), metadata=m, timeout=5),
            lambda: assets.CreateAsset(
                apb.CreateAssetRequest(name="x", kind="toaster"), metadata=m, timeout=5
            ),
            lambda: assets.ListAssets(
                apb.ListAssetsRequest(page_size=10_000), metadata=m, timeout=5
            ),
            lambda: assets.ListAssets(
                apb.ListAssetsRequest(page_token="garbage"), metadata=m, timeout=5
            ),
        ],
        grpc.StatusCode.NOT_FOUND: [
            lambda: users.GetUser(
                ipb.GetUserRequest(id="00000000-0000-0000-0000-000000000000"), metadata=m, timeout=5
            ),
        ],
    }
    for code, calls in cases.items():
        for call in calls:
            assert code_of(call) == code


def test_duplicate_email_is_refused_and_writes_nothing(channels, tenant, settings):
    users = igrpc.UserServiceStub(channels["identity"])
    m = md(tenant)
    email = f"{unique()}@example.com"
    users.CreateUser(ipb.CreateUserRequest(email=email), metadata=m, timeout=5)
    assert (
        code_of(
            lambda: users.CreateUser(
                ipb.CreateUserRequest(email=email.upper()), metadata=m, timeout=5
            )
        )
        == grpc.StatusCode.ALREADY_EXISTS
    )
    conninfo = Clusters(settings).tenant_conninfo("identity", tenant, "main")
    with psycopg.connect(conninfo) as conn:
        (rows,) = conn.execute(
            "SELECT count(*) FROM users WHERE lower(email) = lower(%s)", (email,)
        ).fetchone()
        (events,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE type = 'identity.user_created'"
            " AND lower(payload->>'email') = lower(%s)",
            (email,),
        ).fetchone()
    assert (rows, events) == (1, 1)


def test_control_plane_errors(channels):
    tenants = igrpc.TenantServiceStub(channels["identity"])
    assert (
        code_of(
            lambda: tenants.CreateTenant(
                ipb.CreateTenantRequest(slug="x", name="n", tier=ipb.TIER_BUSINESS), timeout=5
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(
            lambda: tenants.CreateTenant(
                ipb.CreateTenantRequest(slug=unique(), name="n"), timeout=5
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(
            lambda: tenants.CreateTenant(
                ipb.CreateTenantRequest(
                    slug=unique(), name="n", tier=ipb.TIER_BUSINESS, placement="mars"
                ),
                timeout=5,
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(lambda: tenants.GetTenant(ipb.GetTenantRequest(slug=unique()), timeout=5))
        == grpc.StatusCode.NOT_FOUND
    )


def test_pagination_walks_every_asset_once(channels, tenant):
    assets = agrpc.AssetServiceStub(channels["inventory"])
    m = md(tenant)
    created = {
        assets.CreateAsset(
            apb.CreateAssetRequest(name=f"a{i}", kind="saas"), metadata=m, timeout=5
        ).id
        for i in range(5)
    }
    seen, token = [], ""
    while True:
        page = assets.ListAssets(
            apb.ListAssetsRequest(page_size=2, page_token=token), metadata=m, timeout=5
        )
        assert len(page.assets) <= 2
        seen += [a.id for a in page.assets]
        token = page.next_page_token
        if not token:
            break
    assert created <= set(seen) and len(seen) == len(set(seen))


def test_health_and_no_reflection_outside_development_mode(channels):
    """The test stack runs outside development mode: health answers, reflection is off
    (served in development mode only: tests/integration/test_grpc_trust.py)."""
    for _service, chan in channels.items():
        status = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(chan)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        with pytest.raises(grpc.RpcError) as info:
            list(replies)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
