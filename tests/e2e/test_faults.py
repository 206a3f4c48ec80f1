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
    # Kill k is made once the producer has sent kill_at[k] writes, and the producer sends no
    # more than go_on[k] before kill k is done: every kill lands while writes (and so their
    # events) are in flight, however fast or slow the machine is.
    kill_at, go_on = (10, 25, 40), (20, 35, 50)
    killed = [threading.Event() for _ in kill_at]
    sent = [0]

    def produce():
        for i in range(total):
            if i in go_on and not killed[go_on.index(i)].wait(60):
                errors.append(f"kill {go_on.index(i)} not made within 60 s")
                return
            try:
                users.CreateUser(
                    ipb.CreateUserRequest(email=f"u{i}@{slug}.example"),
                    metadata=md(slug),
                    timeout=10,
                )
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
            sent[0] = i + 1
            time.sleep(0.02)  # a steady stream of writes, not a burst: part of the scenario

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    for k, at in enumerate(kill_at):  # kill every connection of this deployment, three times
        eventually(lambda at=at: sent[0] >= at or errors, timeout=60)
        out = infra.rabbitmqctl(
            "close_all_connections", "--vhost", settings.deployment, "fault test"
        )
        assert out.returncode == 0, out.stderr
        killed[k].set()
    producer.join(120)
    assert not producer.is_alive(), f"the producer is stuck after {sent[0]} of {total} writes"
    assert errors == []  # writes never depended on the broker

    eventually(
        lambda: count(settings, "privacy", slug, "SELECT count(*) FROM data_subjects") == total,
        timeout=60,
    )
    eventually(
        lambda: count(settings, "inventory", slug, "SELECT count(*) FROM owners") == total,
        timeout=60,
    )
    # Every event was published (none left unsent: a row whose publish was confirmed but
    # whose mark was lost with the connection is marked by the relay's retry or the sweep,
    # so this is eventual too) and applied exactly once per consumer.
    unsent = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
    eventually(lambda: count(settings, "identity", slug, unsent) == 0, timeout=30)
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
        killed = [
            pid
            for pid, terminated in admin.execute(  # the target list runs only where WHERE holds
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            if terminated
        ]
        assert killed
        # A terminated backend sends its FATAL notice to the client and then leaves
        # pg_stat_activity: once none is listed, every pooled socket of them is readable.
        eventually(
            lambda: (
                not admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (killed,)
                ).fetchall()
            )
        )
    for _ in range(5):  # the very next calls succeed: dead connections are never handed out
        got = assets.GetAsset(apb.GetAssetRequest(id=asset.id), metadata=md(slug), timeout=5)
        assert got.id == asset.id
