"""Events over the real RabbitMQ: duplicates applied once, poison messages retried then
parked in the dead-letter queue, listed and replayed by the CLI."""

from __future__ import annotations

import json
import uuid

import pytest

from ontrackio.core import events as ev
from ontrackio.core.bus import Publisher
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import events_pb2
from ontrackio.privacy.v1 import privacy_pb2, privacy_pb2_grpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md, ontrack


def inbox_rows(settings, service, slug, event_id) -> int:
    db = Names(settings.deployment, service).tenant_database(slug)
    with Clusters(settings).admin_connect("main", db) as conn:
        return conn.execute(
            "SELECT count(*) FROM inbox WHERE event_id = %s", (event_id,)
        ).fetchone()[0]


@pytest.fixture(scope="module")
def publisher(system, settings):
    p = Publisher(settings.amqp_url.get_secret_value())
    yield p
    p.close()


def test_a_redelivered_event_is_applied_once(system, channels, settings, publisher):
    slug = unique("r")
    create_tenant(channels, slug)
    user_id = str(uuid.uuid4())
    event = ev.new(
        "identity.user_created",
        slug,
        events_pb2.UserCreated(user_id=user_id, email="dup@example.com"),
    )
    publisher.publish([event, event, event])
    priv = privacy_pb2_grpc.DataSubjectServiceStub(channels["privacy"])
    eventually(
        lambda: priv.GetDataSubject(
            privacy_pb2.GetDataSubjectRequest(user_id=user_id), metadata=md(slug), timeout=5
        )
    )
    # Both consumers (privacy and inventory) recorded it exactly once.
    eventually(lambda: inbox_rows(settings, "inventory", slug, event.id) == 1)
    assert inbox_rows(settings, "privacy", slug, event.id) == 1


def test_poison_event_is_parked_listed_and_replayed(system, channels, settings, publisher):
    slug = unique("p")  # no such tenant yet: the privacy worker cannot apply the event
    user_id = str(uuid.uuid4())
    event = ev.new(
        "identity.user_created",
        slug,
        events_pb2.UserCreated(user_id=user_id, email="late@example.com"),
    )
    publisher.publish([event])

    def parked():
        listed = json.loads(ontrack(system, "dlq", "list").stdout)
        return [p for p in listed if p["event_id"] == event.id]

    found = eventually(lambda: len(parked()) == 2 and parked(), timeout=30)  # privacy + inventory
    assert {p["attempts"] for p in found} == {3}
    assert {p["queue"].split("--")[1] for p in found} == {
        "privacy.handle_user_created",
        "inventory.handle_user_created",
    }
    assert all("not found" in p["error"] for p in found)

    create_tenant(channels, slug)  # the cause is gone: replay
    r = ontrack(system, "dlq", "replay", "--id", event.id)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["replayed"] == [event.id, event.id]
    priv = privacy_pb2_grpc.DataSubjectServiceStub(channels["privacy"])
    subject = eventually(
        lambda: priv.GetDataSubject(
            privacy_pb2.GetDataSubjectRequest(user_id=user_id), metadata=md(slug), timeout=5
        )
    )
    assert subject.email == "late@example.com"
    assert parked() == []


def test_replay_of_unknown_id_is_bad_input(system):
    r = ontrack(system, "dlq", "replay", "--id", str(uuid.uuid4()))
    assert r.returncode == 2 and "not found" in r.stderr


def test_malformed_message_is_parked_without_retries(system, settings, publisher):
    bad = {"id": "not-a-uuid", "type": "identity.user_created"}
    publisher.send_raw(
        bad, queue="evt-identity-user_created--privacy.handle_user_created", headers={}
    )

    def parked():
        listed = json.loads(ontrack(system, "dlq", "list").stdout)
        return [
            p for p in listed if isinstance(p["body"], dict) and p["body"].get("id") == "not-a-uuid"
        ]

    found = eventually(parked, timeout=20)
    assert found[0]["attempts"] == 1 and "InvalidEvent" in found[0]["error"]
