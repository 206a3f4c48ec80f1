"""A `tenant_deleted` event the registry does not confirm drops nothing: a forged one
published straight to the broker for an active tenant is refused by every service (parked,
counted), the tenant's databases stay; the real deletion path still drops them."""

from __future__ import annotations

import json
import urllib.request

import psycopg
import pytest

from ontrackio.catalogue import DEPLOYMENT, SERVICES
from ontrackio.core.bus import Publisher
from ontrackio.identity.v1 import events_pb2
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md, ontrack


def databases(system, settings, slug: str) -> int:
    with psycopg.connect(system.pg_dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE %s",
            (f"{settings.deployment}\\_%\\_{slug}",),
        ).fetchone()[0]


def refused(system, service: str) -> float:
    port = system.ports[f"{service}-worker-metrics"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    prefix = f'ontrack_events_refused_total{{service="{service}",type="identity.tenant_deleted"}}'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


@pytest.fixture
def publisher(system, settings):
    p = Publisher(settings.amqp_url.get_secret_value())
    yield p
    p.close()


def test_forged_tenant_deleted_for_an_active_tenant_drops_nothing(
    system, channels, settings, publisher
):
    slug = unique("f")
    create_tenant(channels, slug)
    assert databases(system, settings, slug) == len(SERVICES)
    before = {s: refused(system, s) for s in SERVICES}

    forged = DEPLOYMENT.events.new(
        "identity.tenant_deleted", slug, events_pb2.TenantDeleted(slug=slug, placement="main")
    )
    publisher.publish([forged])

    def parked():
        listed = json.loads(ontrack(system, "dlq", "list").stdout)
        return [p for p in listed if p["event_id"] == forged.id]

    found = eventually(lambda: len(parked()) == len(SERVICES) and parked(), timeout=30)
    assert {p["queue"].split("--")[1] for p in found} == {
        f"{s}.handle_tenant_deleted" for s in SERVICES
    }
    assert all(p["attempts"] == 1 for p in found)  # refused at once, never retried
    assert all(
        p["error"] == f"EventRefused: tenant {slug!r} is active, not deleting" for p in found
    )
    assert all(refused(system, s) == before[s] + 1 for s in SERVICES)

    # Nothing was dropped: every database is there and the tenant is served.
    assert databases(system, settings, slug) == len(SERVICES)
    tenants = igrpc.TenantServiceStub(channels["identity"])
    assert tenants.GetTenant(ipb.GetTenantRequest(slug=slug)).status == ipb.TENANT_STATUS_ACTIVE
    users = igrpc.UserServiceStub(channels["identity"])
    users.CreateUser(
        ipb.CreateUserRequest(email="still@example.com"), metadata=md(slug), timeout=10
    )

    # The real path: the registry's own event, once the grace period is over, drops it all.
    r = ontrack(system, "tenant", "delete", slug)
    assert r.returncode == 0, r.stderr

    def deleted():
        listed = json.loads(ontrack(system, "tenant", "list", "--all").stdout)
        return any(t["slug"] == slug and t["status"] == "TENANT_STATUS_DELETED" for t in listed)

    eventually(deleted, timeout=60)
    assert databases(system, settings, slug) == 0
