"""End to end: the CLI creates a tenant, the saga provisions four isolated databases, an
event produced in one service is applied once in the others, and deletion drops it all."""

from __future__ import annotations

import json

import psycopg
import pytest

from ontrackio.catalogue import SERVICES
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.runtime import service_dir
from ontrackio.core.tenancy import Names
from ontrackio.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from ontrackio.privacy.v1 import privacy_pb2, privacy_pb2_grpc
from tests.conftest import unique
from tests.helpers import eventually, md, ontrack


def connect_as(settings, service: str, db_slug: str, role_slug: str) -> psycopg.Connection:
    names = Names(settings.deployment, service)
    conninfo = Clusters(settings).role_conninfo(
        "main", names.tenant_database(db_slug), names.tenant_role(role_slug)
    )
    return psycopg.connect(conninfo, connect_timeout=5)


@pytest.fixture(scope="module")
def two_tenants(system):
    a, b = unique("a"), unique("b")
    for slug, tier in ((a, "business"), (b, "enterprise")):
        r = ontrack(
            system,
            "tenant",
            "create",
            slug,
            "--name",
            f"Tenant {slug}",
            "--tier",
            tier,
            "--domain",
            f"{slug}.example.com",
            "--wait",
            "--timeout",
            "30",
        )
        assert r.returncode == 0, r.stderr
        shown = json.loads(r.stdout)
        assert shown["status"] == "TENANT_STATUS_ACTIVE"
        assert {s["service"]: s["state"] for s in shown["services"]} == {
            s: "ready" for s in SERVICES
        }
    return a, b


def test_every_service_database_exists_and_is_migrated(system, settings, two_tenants):
    a, _ = two_tenants
    for service in SERVICES:
        with connect_as(settings, service, a, a) as conn:
            versions = conn.execute(
                "SELECT component, max(version) FROM schema_migrations GROUP BY 1"
            ).fetchall()
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            ).fetchone()[0]
        expected = mig.for_service(service_dir(service))
        assert dict(versions) == {c: mig.version_of(expected, c) for c in ("core", service)}
        assert owner == Names(settings.deployment, service).tenant_role(a)


def test_tenant_role_cannot_open_another_tenants_database(system, settings, two_tenants):
    a, b = two_tenants
    for service in SERVICES:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect_as(settings, service, b, a)
    # Nor can a tenant role open another service's database of the same tenant.
    names_inv = Names(settings.deployment, "inventory")
    names_priv = Names(settings.deployment, "privacy")
    conninfo = Clusters(settings).role_conninfo(
        "main", names_priv.tenant_database(a), names_inv.tenant_role(a)
    )
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(conninfo, connect_timeout=5)


def test_cli_lists_and_shows_tenants(system, two_tenants):
    a, b = two_tenants
    listed = json.loads(ontrack(system, "tenant", "list").stdout)
    assert {a, b} <= {t["slug"] for t in listed}
    shown = ontrack(system, "tenant", "show", a)
    assert shown.returncode == 0
    # A new custom domain waits for verification (tests/e2e/test_custom_domains.py).
    assert json.loads(shown.stdout).get("domains", []) == []
    assert json.loads(shown.stdout)["unverified_domains"] == [f"{a}.example.com"]


def test_cli_refuses_bad_input_with_exit_2(system, two_tenants):
    a, _ = two_tenants
    cases = [
        ("tenant", "create", "Bad_Slug", "--name", "x", "--tier", "business"),
        ("tenant", "create", a, "--name", "dup", "--tier", "business"),
        ("tenant", "create", unique(), "--name", "x", "--tier", "gold"),
        ("tenant", "show", unique("missing")),
        ("tenant", "resume", a),  # active, not suspended
    ]
    for args in cases:
        r = ontrack(system, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip(), args


def test_user_event_reaches_inventory_and_privacy_once(system, channels, two_tenants):
    a, b = two_tenants
    users = igrpc.UserServiceStub(channels["identity"])
    user = users.CreateUser(
        ipb.CreateUserRequest(email="Ada.Lovelace@Example.com", display_name="Ada"),
        metadata=md(a),
        timeout=5,
    )
    assert user.email == "Ada.Lovelace@Example.com"  # case kept as given
    inv = inventory_pb2_grpc.AssetServiceStub(channels["inventory"])
    asset = inv.CreateAsset(
        inventory_pb2.CreateAssetRequest(name="laptop-1", kind="hardware", owner_user_id=user.id),
        metadata=md(a),
        timeout=5,
    )

    # inventory learns the owner from identity's event
    got = eventually(
        lambda: (
            (
                x := inv.GetAsset(
                    inventory_pb2.GetAssetRequest(id=asset.id), metadata=md(a), timeout=5
                )
            ).owner_email
            and x
        )
    )
    assert got.owner_email == user.email and got.owner_active

    priv = privacy_pb2_grpc.DataSubjectServiceStub(channels["privacy"])
    subject = eventually(
        lambda: priv.GetDataSubject(
            privacy_pb2.GetDataSubjectRequest(user_id=user.id), metadata=md(a), timeout=5
        )
    )
    assert subject.email == user.email

    ev = evidence_pb2_grpc.MetricsServiceStub(channels["evidence"])
    metrics = eventually(
        lambda: (
            (
                m := ev.GetInventoryMetrics(
                    evidence_pb2.GetInventoryMetricsRequest(), metadata=md(a), timeout=5
                )
            ).total_assets
            and m
        )
    )
    assert (metrics.total_assets, metrics.assets_with_owner, metrics.owner_coverage) == (1, 1, 1.0)

    # Tenant b saw none of it.
    assert (
        priv.CountDataSubjects(
            privacy_pb2.CountDataSubjectsRequest(), metadata=md(b), timeout=5
        ).count
        == 0
    )

    # A leaver: the owner reference follows.
    users.DeactivateUser(ipb.GetUserRequest(id=user.id), metadata=md(a), timeout=5)
    eventually(
        lambda: (
            not inv.GetAsset(
                inventory_pb2.GetAssetRequest(id=asset.id), metadata=md(a), timeout=5
            ).owner_active
        )
    )


def test_suspended_tenant_is_refused_then_resumed(system, channels):
    slug = unique("s")
    r = ontrack(system, "tenant", "create", slug, "--name", "S", "--tier", "business", "--wait")
    assert r.returncode == 0, r.stderr
    assert ontrack(system, "tenant", "suspend", slug).returncode == 0
    inv = inventory_pb2_grpc.AssetServiceStub(channels["inventory"])
    import grpc

    def refused():
        try:
            inv.ListAssets(inventory_pb2.ListAssetsRequest(), metadata=md(slug), timeout=5)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        return False

    eventually(refused, timeout=10)
    assert ontrack(system, "tenant", "resume", slug).returncode == 0
    eventually(
        lambda: (
            inv.ListAssets(inventory_pb2.ListAssetsRequest(), metadata=md(slug), timeout=5)
            is not None
        ),
        timeout=10,
    )


def test_delete_drops_databases_and_roles_but_keeps_the_record(system, settings):
    slug = unique("d")
    assert (
        ontrack(
            system, "tenant", "create", slug, "--name", "D", "--tier", "business", "--wait"
        ).returncode
        == 0
    )
    r = ontrack(system, "tenant", "delete", slug)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "TENANT_STATUS_DELETING"

    def gone():
        listed = json.loads(ontrack(system, "tenant", "list", "--all").stdout)
        return any(t["slug"] == slug and t["status"] == "TENANT_STATUS_DELETED" for t in listed)

    eventually(gone, timeout=60)
    with psycopg.connect(system.pg_dsn) as conn:
        pattern = f"{settings.deployment}\\_%\\_{slug}"
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname LIKE %s", (pattern,)
            ).fetchone()[0]
            == 0
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", (pattern,)
            ).fetchone()[0]
            == 0
        )
    # The slug can be used again.
    assert (
        ontrack(
            system, "tenant", "create", slug, "--name", "D2", "--tier", "business", "--wait"
        ).returncode
        == 0
    )
