"""Placement: tenants live on the cluster they were placed on, and a cluster that cannot be
reached leaves the tenant provisioning with the failure visible — never half-done silently."""

from __future__ import annotations

import json

import grpc
import pytest

from ontrackio.catalogue import SERVICES
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.inventory.v1 import inventory_pb2 as apb
from ontrackio.inventory.v1 import inventory_pb2_grpc as agrpc
from tests.conftest import unique
from tests.helpers import eventually, md, ontrack


def test_tenant_on_second_cluster_is_served_through_it(system, channels, settings):
    if "socket" not in settings.pg_clusters:
        pytest.skip("needs PostgreSQL's local socket as a second route (docker runs lack it)")
    slug = unique("pl")
    tenants = igrpc.TenantServiceStub(channels["identity"])
    t = tenants.CreateTenant(
        ipb.CreateTenantRequest(
            slug=slug, name="Placed", tier=ipb.TIER_ENTERPRISE, placement="socket"
        ),
        timeout=10,
    )
    assert t.placement == "socket"
    eventually(
        lambda: (
            tenants.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5).status
            == ipb.TENANT_STATUS_ACTIVE
        ),
        timeout=30,
    )
    assets = agrpc.AssetServiceStub(channels["inventory"])
    assets.CreateAsset(apb.CreateAssetRequest(name="x", kind="cloud"), metadata=md(slug), timeout=5)
    role = Names(settings.deployment, "inventory").tenant_role(slug)
    with Clusters(settings).admin_connect("main") as admin:
        addrs = {
            r[0]
            for r in admin.execute(
                "SELECT client_addr FROM pg_stat_activity WHERE usename = %s", (role,)
            )
        }
    assert addrs == {None}  # a local-socket connection: the placement's route was used


def test_unreachable_cluster_leaves_tenant_provisioning_with_the_error_visible(system, channels):
    slug = unique("br")
    tenants = igrpc.TenantServiceStub(channels["identity"])
    tenants.CreateTenant(
        ipb.CreateTenantRequest(
            slug=slug, name="Broken", tier=ipb.TIER_BUSINESS, placement="broken"
        ),
        timeout=10,
    )

    def all_failed_after_retries():
        t = tenants.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5)
        states = {s.service: s for s in t.services}
        return (
            t.status == ipb.TENANT_STATUS_PROVISIONING
            and all(states[s].state == "failed" and states[s].attempts >= 3 for s in SERVICES)
            and t
        )

    t = eventually(all_failed_after_retries, timeout=40)
    assert all("OperationalError" in s.last_error for s in t.services)
    shown = ontrack(system, "tenant", "show", slug)
    assert json.loads(shown.stdout)["status"] == "TENANT_STATUS_PROVISIONING"
    # Not active, so calls are refused.
    with pytest.raises(grpc.RpcError) as info:
        agrpc.AssetServiceStub(channels["inventory"]).ListAssets(
            apb.ListAssetsRequest(), metadata=md(slug), timeout=5
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
