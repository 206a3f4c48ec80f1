"""Faults while the system runs: broker connections killed mid-stream lose no event and
apply none twice; killed PostgreSQL backends are replaced without restarting a service."""

from __future__ import annotations

import threading
import time

import pytest

from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.devtools import infra
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.inventory.v1 import inventory_pb2 as apb
from ontrackio.inventory.v1 import inventory_pb2_grpc as agrpc
from ontrackio.privacy.v1 import privacy_pb2, privacy_pb2_grpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md

pytestmark = pytest.mark.fault


def count(settings, service, slug, query) -> int:
    db = Names(settings.deployment, service).tenant_database(slug)
    with Clusters(settings).admin_connect("main", db) as conn:
        return conn.execute(query).fetchone()[0]


def test_broker_connections_killed_while_events_flow(system, channels, settings):
    if not infra.can_manage_vhosts():
        pytest.fail("this fault test needs rabbitmqctl to close the deployment's connections")
    slug = unique("fa")
    create_tenant(channels, slug)
    users = igrpc.UserServiceStub(channels["identity"])
    total, errors = 60, []

    def produce():
        for i in range(total):
            try:
                users.CreateUser(
                    ipb.CreateUserRequest(email=f"u{i}@{slug}.example"),
                    metadata=md(slug),
                    timeout=10,
                )
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
            time.sleep(0.02)

    producer = threading.Thread(target=produce)
    producer.start()
    for _ in range(3):  # kill every connection of this deployment, three times over
        time.sleep(0.4)
        out = infra.rabbitmqctl(
            "close_all_connections", "--vhost", settings.deployment, "fault test"
        )
        assert out.returncode == 0, out.stderr
    producer.join()
    assert errors == []  # writes never depended on the broker

    eventually(
        lambda: count(settings, "privacy", slug, "SELECT count(*) FROM data_subjects") == total,
        timeout=60,
    )
    eventually(
        lambda: count(settings, "inventory", slug, "SELECT count(*) FROM owners") == total,
        timeout=60,
    )
    # Every event was published (none left unsent) and applied exactly once per consumer.
    assert (
        count(settings, "identity", slug, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        == 0
    )
    for service in ("privacy", "inventory"):
        assert (
            count(
                settings,
                service,
                slug,
                "SELECT count(*) FROM inbox WHERE type = 'identity.user_created'",
            )
            == total
        )
    priv = privacy_pb2_grpc.DataSubjectServiceStub(channels["privacy"])
    assert (
        priv.CountDataSubjects(
            privacy_pb2.CountDataSubjectsRequest(), metadata=md(slug), timeout=5
        ).count
        == total
    )


def test_killed_database_backends_are_replaced(system, channels, settings):
    slug = unique("fb")
    create_tenant(channels, slug)
    assets = agrpc.AssetServiceStub(channels["inventory"])
    asset = assets.CreateAsset(
        apb.CreateAssetRequest(name="srv", kind="hardware"), metadata=md(slug), timeout=5
    )
    role = Names(settings.deployment, "inventory").tenant_role(slug)
    with Clusters(settings).admin_connect("main") as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s",
            (role,),
        ).fetchone()[0]
    assert killed >= 1
    time.sleep(0.2)
    for _ in range(5):  # the very next calls succeed: dead connections are never handed out
        got = assets.GetAsset(apb.GetAssetRequest(id=asset.id), metadata=md(slug), timeout=5)
        assert got.id == asset.id
