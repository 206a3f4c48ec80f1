"""Cache invalidation from identity's events: one exclusive, auto-delete queue per worker process.

A kombu consumer runs in a daemon thread and hands each event to the worker's event loop
(``call_soon_threadsafe``). Routing keys: ``token_revoked``, ``allowlist_changed`` and
``sessions_revoked`` on the topic exchange ``identity.events``. Events may be missed while
the connection is down, so the caches are cleared when it is lost, after every failed
reconnection attempt (one a second) and again once the queue is bound anew: while
disconnected, no cached record is older than about a second (the TTLs bound staleness only
for an event lost while connected).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

import kombu
from kombu import Consumer, Queue

from ontrackio.core import events as ev
from ontrackio.core.bus import events_exchange
from ontrackio.core.contract import Deployment
from ontrackio.identity.contract import CONTRACT as IDENTITY

log = logging.getLogger(__name__)

ROUTING_KEYS = ("token_revoked", "allowlist_changed", "sessions_revoked")
EVENTS = Deployment([IDENTITY]).events  # identity's event types (its contract)


def queue_for_worker() -> Queue:
    name = f"gateway.invalidate.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    exchange = events_exchange("identity")
    return Queue(
        name,
        exchange=exchange,
        bindings=[kombu.binding(exchange, routing_key=key) for key in ROUTING_KEYS],
        exclusive=True,
        auto_delete=True,
        durable=False,
    )


class InvalidationListener:
    """Delivers identity's invalidation events to ``on_event`` on ``loop``; ``on_reset`` after a
    reconnection. ``bound`` is set once the queue exists (events from then on are seen)."""

    def __init__(
        self,
        amqp_url: str,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[ev.Event], None],
        on_reset: Callable[[], None],
    ) -> None:
        self.amqp_url = amqp_url
        self.loop = loop
        self.on_event = on_event
        self.on_reset = on_reset
        self.bound = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-invalidation", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _handle(self, body, message) -> None:
        for envelope in ev.unpack(body):  # one event, or a pack of them
            try:
                event = EVENTS.from_wire(envelope)
            except ev.InvalidEvent as exc:
                log.warning("ignoring malformed event: %s", exc)
            else:
                self.loop.call_soon_threadsafe(self.on_event, event)
        message.ack()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                with kombu.Connection(self.amqp_url, connect_timeout=5, heartbeat=10) as conn:
                    channel = conn.channel()
                    queue = queue_for_worker()
                    with Consumer(
                        channel,
                        queues=[queue],
                        callbacks=[self._handle],
                        accept=["json"],
                        prefetch_count=100,
                    ):
                        if not first:
                            self.loop.call_soon_threadsafe(self.on_reset)
                        first = False
                        self.bound.set()
                        while not self._stop.is_set():
                            try:
                                conn.drain_events(timeout=0.5)
                            except TimeoutError:
                                conn.heartbeat_check()
            except Exception as exc:  # noqa: BLE001 - any broker failure: reconnect
                if self._stop.is_set():
                    return
                log.warning(
                    "invalidation listener lost the broker (%s); reconnecting", type(exc).__name__
                )
                self.loop.call_soon_threadsafe(self.on_reset)
                self._stop.wait(1.0)
