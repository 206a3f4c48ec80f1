"""Events over the real RabbitMQ: duplicates applied once (seen through counters that are not
idempotent, with a positive control that takes the inbox away), poison messages retried then
parked in the dead-letter queue, listed and replayed by the CLI; a pack (several events in
one message) settled event by event."""

from __future__ import annotations

import dataclasses
import json
import uuid

import kombu
import pytest
from prometheus_client import REGISTRY

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry
from ontrackio.core.bus import Publisher
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.tenancy import Names
from ontrackio.core.worker import WorkerProcess, apply_batch
from ontrackio.devtools import infra
from ontrackio.identity.v1 import events_pb2
from ontrackio.privacy.v1 import privacy_pb2, privacy_pb2_grpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md, ontrack
from tests.prom import Scrape


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


USER_CREATED = "identity.user_created"


def handled(system, service: str) -> Scrape:
    """The worker's metrics; its `ontrack_events_handled_total` counts every delivery by
    outcome, so unlike an inbox row or an upsert it is not idempotent: a copy applied again
    reads `applied` twice."""
    return Scrape.fetch(system.ports[f"{service}-worker-metrics"])


def outcomes(after: Scrape, before: Scrape, service: str, event_type: str = USER_CREATED):
    """How many deliveries of `event_type` `service` counted as applied, duplicate and failed
    since `before`. The applied series must exist (it shows the counter is read at all); a
    duplicate or failed series the worker never created means no such delivery yet."""
    name, labels = "ontrack_events_handled_total", {"service": service, "type": event_type}
    counted = {"applied": after.rise(before, name, outcome="applied", **labels)}
    for outcome in ("duplicate", "failed"):
        present = after.has(name, outcome=outcome, **labels)
        counted[outcome] = after.rise(before, name, outcome=outcome, **labels) if present else 0
    return counted


def test_a_redelivered_event_is_applied_once_and_counted_as_duplicates(
    system, channels, settings, publisher
):
    """The same event five times: three copies in one message (one batch), then twice more
    on its own after it was applied (as a redelivery after a lost acknowledgement comes,
    meeting the inbox row of a committed transaction). Each consumer counts one `applied`
    and four `duplicate` deliveries; the positive control of this detector is
    test_without_the_inbox_check_the_counting_effect_sees_every_redelivery."""
    slug = unique("r")
    create_tenant(channels, slug)
    user_id = str(uuid.uuid4())
    event = DEPLOYMENT.events.new(
        USER_CREATED, slug, events_pb2.UserCreated(user_id=user_id, email="dup@example.com")
    )
    services = ("privacy", "inventory")
    before = {s: handled(system, s) for s in services}
    publisher.publish([event, event, event])
    for service in services:
        eventually(lambda s=service: outcomes(handled(system, s), before[s], s)["applied"] >= 1)
    for _ in range(2):
        publisher.publish([event])
    for service in services:
        # Until all five deliveries are counted, whichever way: the assertion then says how.
        counted = eventually(
            lambda s=service: (
                (o := outcomes(handled(system, s), before[s], s))["applied"] + o["duplicate"] >= 5
                and o
            )
        )
        assert counted == {"applied": 1, "duplicate": 4, "failed": 0}, service
        assert inbox_rows(settings, service, slug, event.id) == 1
    priv = privacy_pb2_grpc.DataSubjectServiceStub(channels["privacy"])
    subject = priv.GetDataSubject(
        privacy_pb2.GetDataSubjectRequest(user_id=user_id), metadata=md(slug), timeout=5
    )
    assert subject.email == "dup@example.com"


@pytest.fixture(scope="module")
def privacy_process(system, settings):
    """The privacy worker's consuming code (`apply_batch`, its group committer and inbox)
    run in this process on a runtime of its own, against the real tenant databases and
    registry: what the worker does with a batch once the broker delivered it, with no broker
    in between, so a test can take a part of it away."""
    rt = entry.default_bootstrap("privacy", settings, DEPLOYMENT)
    yield WorkerProcess(rt)
    rt.close()


def deliver_copies(process: WorkerProcess, slug: str) -> tuple[list[str], dict[str, float]]:
    """One event delivered four times to a counting effect: twice in one batch, then twice
    in batches of their own. Returns the user ids the effect was handed (a list: every call
    appends, nothing absorbs a repeat) and the in-process duplicate-outcome counts."""
    event = DEPLOYMENT.events.new(
        USER_CREATED,
        slug,
        events_pb2.UserCreated(user_id=str(uuid.uuid4()), email="count@example.com"),
    )
    seen: list[str] = []

    def counting_effect(uow, payloads):
        seen.extend(m.user_id for m in payloads)

    labels = {"service": "privacy", "type": USER_CREATED}

    def count(outcome: str) -> float:
        got = REGISTRY.get_sample_value(
            "ontrack_events_handled_total", {**labels, "outcome": outcome}
        )
        return 0.0 if got is None else got  # an in-process counter born at its first increment

    before = {o: count(o) for o in ("applied", "duplicate")}
    wire = event.to_wire()
    results = [apply_batch(process, [wire, wire], counting_effect)]
    results += [apply_batch(process, [wire], counting_effect) for _ in range(2)]
    assert not [r for batch in results for r in batch if isinstance(r, BaseException)], results
    return seen, {o: count(o) - before[o] for o in before}


def test_a_counting_effect_sees_a_redelivered_event_once(privacy_process, channels):
    slug = unique("ci")
    create_tenant(channels, slug)
    seen, counted = deliver_copies(privacy_process, slug)
    assert len(seen) == 1
    assert counted == {"applied": 1, "duplicate": 3}


def test_without_the_inbox_check_the_counting_effect_sees_every_redelivery(
    privacy_process, channels, monkeypatch
):
    """The positive control of the two tests above: with the inbox statement taken away
    (every event reported as new, nothing recorded) the same deliveries reach the effect
    three times (the copy within one batch is still skipped by the committer) and count as
    applied, so both detectors do see duplicates when the inbox lets them through."""
    slug = unique("cx")
    create_tenant(channels, slug)
    monkeypatch.setattr(UnitOfWork, "first_deliveries", lambda self, events: {e.id for e in events})
    seen, counted = deliver_copies(privacy_process, slug)
    assert len(seen) == 3 and len(set(seen)) == 1
    assert counted == {"applied": 3, "duplicate": 1}


def test_poison_event_is_parked_listed_and_replayed(system, channels, settings, publisher):
    slug = unique("p")  # no such tenant yet: the privacy worker cannot apply the event
    user_id = str(uuid.uuid4())
    event = DEPLOYMENT.events.new(
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


def unsettled(settings, queue: str) -> int:
    """Messages of `queue` not yet acknowledged (ready + delivered and unacked)."""
    out = infra.rabbitmqctl("list_queues", "-q", "-p", settings.deployment, "name", "messages")
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        name, _, count = line.strip().rpartition("\t")
        if name == queue:
            return int(count)
    raise AssertionError(f"no queue {queue}")


def test_a_burst_with_bad_events_applies_the_rest_once_and_acks_everything(
    system, channels, settings, publisher
):
    """One burst, consumed in batches: good events (and copies of some) applied once each
    (counted: 120 applied, 10 duplicates), a bad payload parked at once, an unknown
    tenant's event retried then parked, and every message acknowledged (batch acks cover
    exactly what was handled)."""
    if not infra.can_manage_vhosts():
        pytest.fail("this test needs rabbitmqctl to read the queue's unacknowledged count")
    slug = unique("b")
    create_tenant(channels, slug)
    good = [
        DEPLOYMENT.events.new(
            "identity.user_created",
            slug,
            events_pb2.UserCreated(user_id=str(uuid.uuid4()), email=f"u{i}@{slug}.example"),
        )
        for i in range(120)
    ]
    stranger = DEPLOYMENT.events.new(
        "identity.user_created",
        unique("nobody"),
        events_pb2.UserCreated(user_id=str(uuid.uuid4()), email="x@example.com"),
    )
    bad_payload = dataclasses.replace(good[0], id=str(uuid.uuid4()), payload={"user_id": 7})
    burst = good[:60] + [stranger, bad_payload] + good[60:] + good[:10]
    services = ("privacy", "inventory")
    before = {s: handled(system, s) for s in services}
    publisher.publish(burst)

    def subjects() -> int:
        db = Names(settings.deployment, "privacy").tenant_database(slug)
        with Clusters(settings).admin_connect("main", db) as conn:
            return conn.execute("SELECT count(*) FROM data_subjects").fetchone()[0]

    eventually(lambda: subjects() == len(good))

    def parked(event_id):
        listed = json.loads(ontrack(system, "dlq", "list").stdout)
        return [p for p in listed if p["event_id"] == event_id]

    found = eventually(lambda: len(parked(bad_payload.id)) == 2 and parked(bad_payload.id))
    assert {p["attempts"] for p in found} == {1} and all(
        "InvalidEvent" in p["error"] for p in found
    )
    found = eventually(lambda: len(parked(stranger.id)) == 2 and parked(stranger.id), timeout=30)
    assert {p["attempts"] for p in found} == {3}
    for service in services:
        queue = f"evt-identity-user_created--{service}.handle_user_created"
        eventually(lambda q=queue: unsettled(settings, q) == 0)
        assert sum(inbox_rows(settings, service, slug, e.id) for e in good) == len(good)
        # Every delivery counted once: the bad payload failed once, the stranger three times.
        counted = outcomes(handled(system, service), before[service], service)
        assert counted == {"applied": len(good), "duplicate": 10, "failed": 4}, service
    assert subjects() == len(good)


def test_a_blocked_tenant_does_not_stall_the_others(system, channels, settings, publisher):
    """One tenant's event is stuck (its table locked) while another tenant's events, more
    messages than the consumer's prefetch window, flow past it; the stuck one is applied
    after. Each event is published alone (one message each: a pack would fill no window)."""
    stuck, busy = unique("sa"), unique("sb")
    create_tenant(channels, stuck)
    create_tenant(channels, busy)

    def subjects(slug) -> int:
        db = Names(settings.deployment, "privacy").tenant_database(slug)
        with Clusters(settings).admin_connect("main", db) as conn:
            return conn.execute("SELECT count(*) FROM data_subjects").fetchone()[0]

    def user_created(slug, i):
        msg = events_pb2.UserCreated(user_id=str(uuid.uuid4()), email=f"u{i}@{slug}.example")
        return DEPLOYMENT.events.new("identity.user_created", slug, msg)

    db = Names(settings.deployment, "privacy").tenant_database(stuck)
    many = settings.event_prefetch + 200
    with Clusters(settings).admin_connect("main", db) as lock, lock.transaction():
        lock.execute("LOCK TABLE data_subjects IN ACCESS EXCLUSIVE MODE")  # until the block ends
        publisher.publish([user_created(stuck, 0)])
        for i in range(many):
            publisher.publish([user_created(busy, i)])
        eventually(lambda: subjects(busy) == many, timeout=60)
    eventually(lambda: subjects(stuck) == 1)


def test_a_pack_for_per_message_handlers_parks_its_bad_event_alone(
    system, channels, settings, publisher
):
    """A pack of a bad tenant_created and a good one (repeated for a live tenant, which
    provisioning absorbs) reaches the four services' per-message handlers: the bad event is
    parked alone at once in each, as a single envelope, and every message is settled."""
    if not infra.can_manage_vhosts():
        pytest.fail("this test needs rabbitmqctl to read the queue's unacknowledged count")
    slug = unique("k")
    create_tenant(channels, slug)
    again = DEPLOYMENT.events.new(
        "identity.tenant_created",
        slug,
        events_pb2.TenantCreated(
            slug=slug, name="Again", tier="business", region="eu-central-1", placement="main"
        ),
    )
    bad = dataclasses.replace(again, id=str(uuid.uuid4()), payload={"slug": {"nested": 1}})
    publisher.publish([bad, again])

    def parked(event_id):
        listed = json.loads(ontrack(system, "dlq", "list").stdout)
        return [p for p in listed if p["event_id"] == event_id]

    found = eventually(lambda: len(parked(bad.id)) == 4 and parked(bad.id), timeout=30)
    assert {p["queue"].split("--")[1] for p in found} == {
        f"{service}.handle_tenant_created"
        for service in ("identity", "inventory", "privacy", "evidence")
    }
    assert all(p["attempts"] == 1 and "InvalidEvent" in p["error"] for p in found)
    assert all(p["body"] == bad.to_wire() for p in found)  # alone, not the pack
    for service in ("identity", "inventory", "privacy", "evidence"):
        queue = f"evt-identity-tenant_created--{service}.handle_tenant_created"
        eventually(lambda q=queue: unsettled(settings, q) == 0)
    assert parked(again.id) == []


def test_a_short_retry_is_not_held_behind_a_long_one(system, settings, publisher):
    """Retries wait in one queue per delay: a 100 ms retry sent after a 3 s one comes back
    first (one queue with per-message expiry released them only in order)."""
    from ontrackio.core import bus

    url = settings.amqp_url.get_secret_value()
    target = kombu.Queue(f"test.retry-order.{uuid.uuid4().hex[:8]}", auto_delete=False)
    with bus.connect(url) as conn:
        target(conn.channel()).declare()
        try:
            for delay, name in ((3000, "slow"), (100, "fast")):
                retry = bus.retry_queue(target.name, delay)
                publisher.declare(retry)
                publisher.send_raw({"name": name}, queue=retry.name, headers={})
            channel = conn.channel()
            arrived = [
                eventually(
                    lambda: target(channel).get(no_ack=True), timeout=10, interval=0.05
                ).decode()["name"]
                for _ in range(2)
            ]
            assert arrived == ["fast", "slow"]
        finally:
            target(conn.channel()).delete()
            for delay in (3000, 100):
                bus.retry_queue(target.name, delay)(conn.channel()).delete()
