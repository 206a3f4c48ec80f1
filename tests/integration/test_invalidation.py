"""The gateway's invalidation listener on the real RabbitMQ: every event of a pack reaches
the gateway's event loop, and a malformed one among them is skipped alone."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid

import pytest

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import events as ev
from ontrackio.core.bus import Publisher
from ontrackio.gateway.invalidation import InvalidationListener
from ontrackio.identity.v1 import access_pb2


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def test_a_pack_of_invalidations_reaches_the_gateway_event_by_event(system, settings, loop):
    url = settings.amqp_url.get_secret_value()
    seen: list[ev.Event] = []
    arrived = threading.Event()

    def on_event(event: ev.Event) -> None:
        seen.append(event)
        if len(seen) == 3:
            arrived.set()

    listener = InvalidationListener(url, loop, on_event, on_reset=lambda: None)
    listener.start()
    try:
        assert listener.bound.wait(10)
        tenant = f"inv{uuid.uuid4().hex[:8]}"
        revoked = [
            DEPLOYMENT.events.new(
                "identity.token_revoked", tenant, access_pb2.TokenRevoked(token_id=str(i))
            )
            for i in range(2)
        ]
        bad = dataclasses.replace(revoked[0], id="not-a-uuid")
        changed = DEPLOYMENT.events.new(
            "identity.allowlist_changed", tenant, access_pb2.AllowlistChanged(cidrs=["10.0.0.0/8"])
        )
        publisher = Publisher(url)
        try:
            publisher.publish([revoked[0], bad, changed, revoked[1]])  # two messages, one a pack
        finally:
            publisher.close()
        assert arrived.wait(10), seen
        assert [e.id for e in seen if e.type == "identity.token_revoked"] == [e.id for e in revoked]
        assert [e.id for e in seen if e.type == "identity.allowlist_changed"] == [changed.id]
    finally:
        listener.stop()
