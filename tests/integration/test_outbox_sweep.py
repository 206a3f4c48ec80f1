"""The workers' periodic outbox sweep on the real stack: an event a crashed writer left
unsent (committed, never relayed) is published and applied; databases unchanged since a
sweep that left them empty are skipped, not visited every interval."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import outbox
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import events_pb2
from ontrackio.privacy.v1 import privacy_pb2, privacy_pb2_grpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md
from tests.integration.test_metrics import scrape

SWEPT = "ontrack_outbox_sweep_databases_total"


def swept(system, outcome: str) -> float:
    """The identity worker's count of databases the sweep `outcome` (the series must exist)."""
    return scrape(system, "identity-worker").value(SWEPT, outcome=outcome, service="identity")


def test_the_sweep_publishes_what_a_crashed_writer_left_and_skips_idle_databases(
    system, channels, settings
):
    slug = unique("w")
    create_tenant(channels, slug)
    # Idle databases are skipped: the counter grows while this tenant (and others) sit idle.
    before = swept(system, "skipped")
    eventually(lambda: swept(system, "skipped") > before, timeout=15)

    # A writer committed a user_created event and died before its relay published it.
    user_id = str(uuid.uuid4())
    event = DEPLOYMENT.events.new(
        "identity.user_created",
        slug,
        events_pb2.UserCreated(user_id=user_id, email="orphan@example.com"),
    )
    event = dataclasses.replace(event, occurred_at=event.occurred_at - timedelta(seconds=30))
    db = Names(settings.deployment, "identity").tenant_database(slug)
    before_sweep = scrape(system, "identity-worker")
    with Clusters(settings).admin_connect("main", db) as conn:
        outbox.add(conn, event)

    priv = privacy_pb2_grpc.DataSubjectServiceStub(channels["privacy"])
    subject = eventually(
        lambda: priv.GetDataSubject(
            privacy_pb2.GetDataSubjectRequest(user_id=user_id), metadata=md(slug), timeout=5
        ),
        timeout=30,
    )
    assert subject.email == "orphan@example.com"
    visited = scrape(system, "identity-worker").rise(
        before_sweep, SWEPT, outcome="visited", service="identity"
    )
    assert visited >= 1  # the sweep visited the database with the orphaned row
    with Clusters(settings).admin_connect("main", db) as conn:
        assert outbox.backlog(conn) == 0  # published and marked sent by the sweep
