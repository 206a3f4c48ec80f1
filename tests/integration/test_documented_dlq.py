"""`ontrack dlq replay --all` on the real broker and workers (README, "Operating it"): every
parked event goes back to the queue it failed in and, its cause gone, is applied once."""

from __future__ import annotations

import json
import uuid

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core.bus import Publisher
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import events_pb2
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, ontrack

CONSUMERS = ("privacy", "inventory")  # the services that handle identity.user_created


def parked(system, ids: set[str]) -> list[dict]:
    listed = json.loads(ontrack(system, "dlq", "list").stdout)
    return [p for p in listed if p["event_id"] in ids]


def inbox_rows(settings, service: str, slug: str, event_id: str) -> int:
    db = Names(settings.deployment, service).tenant_database(slug)
    with Clusters(settings).admin_connect("main", db) as conn:
        return conn.execute(
            "SELECT count(*) FROM inbox WHERE event_id = %s", (event_id,)
        ).fetchone()[0]


def subject_email(settings, slug: str, user_id: str) -> str | None:
    db = Names(settings.deployment, "privacy").tenant_database(slug)
    with Clusters(settings).admin_connect("main", db) as conn:
        row = conn.execute(
            "SELECT email FROM data_subjects WHERE user_id = %s", (user_id,)
        ).fetchone()
    return row and row[0]


def test_replay_all_sends_every_parked_event_back_and_they_are_applied(system, channels, settings):
    """Events for two tenants that do not exist yet are retried, then parked by both
    consumers; once the tenants exist, `dlq replay --all` (no ids named) replays every one,
    each is applied exactly once per consumer, and none is left parked. Other events the
    session parked are replayed too (the command's contract); only these are checked."""
    slugs = [unique("dl"), unique("dl")]
    events = [
        DEPLOYMENT.events.new(
            "identity.user_created",
            slug,
            events_pb2.UserCreated(user_id=str(uuid.uuid4()), email=f"u{i}@{slug}.example"),
        )
        for slug in slugs
        for i in range(2)
    ]
    ids = {e.id for e in events}
    publisher = Publisher(settings.amqp_url.get_secret_value())
    try:
        publisher.publish(events)
    finally:
        publisher.close()
    found = eventually(
        lambda: len(parked(system, ids)) == len(events) * len(CONSUMERS) and parked(system, ids),
        timeout=30,
    )
    assert {p["attempts"] for p in found} == {settings.event_max_attempts}

    for slug in slugs:  # the cause is gone
        create_tenant(channels, slug)
    r = ontrack(system, "dlq", "replay", "--all")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["not_found"] == []
    mine = sorted(i for i in out["replayed"] if i in ids)
    assert mine == sorted(list(ids) * len(CONSUMERS))

    for e in events:
        msg = e.message()
        eventually(lambda e=e, m=msg: subject_email(settings, e.tenant, m.user_id) == m.email)
        for service in CONSUMERS:
            eventually(lambda s=service, e=e: inbox_rows(settings, s, e.tenant, e.id) == 1)
    assert parked(system, ids) == []
