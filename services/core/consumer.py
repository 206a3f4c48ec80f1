"""Batched consumption for apply-once event handlers (nameko entrypoints).

nameko's own event handler spawns a worker per message and acknowledges each one on its
own. For handlers that only apply an event to a tenant's database (inbox row + effect),
that per-message machinery cost more CPU than the work itself. `BatchEventHandler`
consumes the same queues (same names, same bindings: core/topology.py) but:

- the messages that are ready are taken together, grouped by tenant, and each group is
  handed to one nameko worker (so a burst becomes a few workers, not hundreds); the
  handler returns one outcome per message;
- acknowledgements go out in order, several at a time (`basic.ack` with `multiple`), as
  soon as every earlier delivery on the channel is settled, or one by one behind a slow
  delivery (`AckTracker`);
- a failed message is retried with backoff or parked in the dead-letter queue, one by
  one, exactly as for per-message handlers (`retry_or_park`).

Batching is self-clocking: when the worker keeps up, groups hold one or two events and
latency stays low; when events arrive faster, more wait per group and each costs less.
Before taking what is ready, the dispatcher lets a burst gather for
`ONTRACK_EVENT_GATHER_MS` (15 ms): the relay publishes in bursts, and taking the first
messages of one alone made groups of one or two. Measured with the bench's paced run at
500 events/s: without it two of three rounds saturated the consumers (p50 150-220 ms,
p99 ~700 ms); with it the p50 stayed at 50-60 ms.
Batch handlers share one connection and channel of their own (their prefetch is larger
than the per-message handlers', whose work, such as provisioning a database, is slow).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from functools import partial

import eventlet
from eventlet.queue import LightQueue
from nameko.events import EventHandler
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import QueueConsumer

from ontrackio.core import bus
from ontrackio.core import events as ev

log = logging.getLogger(__name__)

MAX_GROUP = 100  # events handed to one worker
# nameko config keys, set by core/worker.py from the settings (which hold the defaults).
PREFETCH_CONFIG_KEY = "ONTRACK_EVENT_PREFETCH"
GATHER_CONFIG_KEY = "ONTRACK_EVENT_GATHER_MS"


class AckTracker:
    """Which deliveries of one channel to acknowledge, and how: several at a time in
    delivery order, or one by one when an early delivery is slow.

    `settle(tag, ack)` records that a delivery is done (acked, or handed back with a
    reject) and returns the acknowledgements to send now, as (tag, multiple) pairs. When
    every earlier delivery is settled, one `basic.ack` with `multiple` covers the run. A
    delivery still in flight holds back the acknowledgements of everything after it; once
    `loose` of those wait, they are acknowledged one by one, so a slow tenant's event can
    never fill the prefetch window and stall the other tenants' events behind it.
    """

    def __init__(self, loose: int = 32) -> None:
        self._loose = loose
        self._order: deque[int] = deque()  # delivery order; may hold tags already acked
        self._state: dict[int, bool | None] = {}  # None: in flight; else settled (acked?)
        self._waiting = 0  # settled, behind a delivery in flight

    def delivered(self, tag: int) -> None:
        self._order.append(tag)
        self._state[tag] = None

    def settle(self, tag: int, ack: bool = True) -> list[tuple[int, bool]]:
        if self._state.get(tag, False) is not None:
            return []  # unknown or settled before
        self._state[tag] = ack
        self._waiting += 1
        upto = None
        while self._order:
            head = self._order[0]
            state = self._state.get(head, True)
            if head in self._state and state is None:
                break
            self._order.popleft()
            if head in self._state:
                del self._state[head]
                self._waiting -= 1
                if state:
                    upto = head
        acks = [] if upto is None else [(upto, True)]
        if self._waiting >= self._loose:
            for t, state in list(self._state.items()):
                if state is not None:
                    del self._state[t]
                    if state:
                        acks.append((t, False))
            self._waiting = 0
        return acks

    def __len__(self) -> int:
        return len(self._state)


class BatchQueueConsumer(QueueConsumer):
    """nameko's queue consumer, for batch handlers: no green thread per message, and
    acknowledgements several at a time. One instance (connection, channel) per container,
    apart from the consumer of per-message handlers."""

    def __init__(self) -> None:
        super().__init__()
        self._trackers: dict[object, AckTracker] = {}

    @property
    def prefetch_count(self) -> int:
        return int(self.container.config[PREFETCH_CONFIG_KEY])

    def get_consumers(self, consumer_cls, channel):
        self._trackers = {}  # a (re)connection: deliveries of the old channel are void
        return super().get_consumers(consumer_cls, channel)

    def handle_message(self, provider, body, message):
        tracker = self._trackers.get(message.channel)
        if tracker is None:
            tracker = self._trackers[message.channel] = AckTracker()
        tracker.delivered(message.delivery_tag)
        provider.collect(body, message)  # in the consuming thread: must not block

    def ack_message(self, message):
        self._settle(message, True)

    def requeue_message(self, message):
        self._settle(message, False)

    def _settle(self, message, ack: bool) -> None:
        channel = message.channel
        tracker = self._trackers.get(channel)
        if tracker is None or not channel.connection:
            return  # its channel is gone: the broker redelivers the message
        try:
            if not ack:
                message.requeue()
            for tag, multiple in tracker.settle(message.delivery_tag, ack):
                channel.basic_ack(tag, multiple=multiple)
        except ConnectionError:  # closing: the broker redelivers what was not acked
            pass


class BatchEventHandler(EventHandler):
    """An event handler whose method receives a list of message bodies of one tenant and
    returns one outcome per body (True/False, or the exception that body raised)."""

    queue_consumer = BatchQueueConsumer()

    def __init__(self, *args, failure: Callable | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._failure = failure
        self._ready: LightQueue | None = None

    def setup(self):
        super().setup()
        self._ready = LightQueue()

    def start(self):
        super().start()
        self.container.spawn_managed_thread(self._dispatch_forever, identifier=repr(self))

    def collect(self, body, message) -> None:
        self._ready.put((body, message))

    def _dispatch_forever(self) -> None:
        gather = float(self.container.config[GATHER_CONFIG_KEY]) / 1000
        while True:
            ready = [self._ready.get()]
            if gather:
                eventlet.sleep(gather)  # let the rest of a burst arrive: fewer, bigger groups
            while not self._ready.empty():
                ready.append(self._ready.get_nowait())
            for group in groups(ready):
                bodies = [b for b, _ in group]
                messages = [m for _, m in group]
                try:
                    self.container.spawn_worker(
                        self, (bodies,), {}, handle_result=partial(self.handle_batch, messages)
                    )
                except ContainerBeingKilled:
                    for m in messages:
                        self.queue_consumer.requeue_message(m)

    def handle_batch(self, messages, worker_ctx, result=None, exc_info=None):
        outcomes = [exc_info[1]] * len(messages) if exc_info is not None else list(result)
        for message, outcome in zip(messages, outcomes, strict=True):
            failed = outcome if isinstance(outcome, BaseException) else None
            settle(self.queue_consumer, message, failed, partial(self._failure, self.queue.name))
        return result, exc_info


def settle(consumer, message, failed: BaseException | None, failure: Callable) -> None:
    """Acknowledge a handled message; a failed one is first handed to `failure` (retry or
    park, see `retry_or_park`), and goes back to its queue if even that fails."""
    if failed is not None:
        try:
            failure(message, failed)
        except Exception:  # noqa: BLE001 - broker trouble: hand the message back
            log.exception("could not schedule a retry; requeueing")
            consumer.requeue_message(message)
            return
    consumer.ack_message(message)


def groups(ready: list[tuple[object, object]]) -> list[list[tuple[object, object]]]:
    """Ready (body, message) pairs grouped by tenant in arrival order, at most MAX_GROUP
    per group; a body without a readable tenant is grouped with the other such bodies."""
    by_tenant: dict[object, list] = {}
    for body, message in ready:
        tenant = body.get("tenant") if isinstance(body, dict) else None
        by_tenant.setdefault(tenant if isinstance(tenant, str) else None, []).append(
            (body, message)
        )
    out = []
    for items in by_tenant.values():
        out += [items[i : i + MAX_GROUP] for i in range(0, len(items), MAX_GROUP)]
    return out


def retry_or_park(publisher, settings, queue: str, message, exc: BaseException) -> None:
    """Send a failed message to its queue's retry queue with backoff, or park it in the
    dead-letter queue when it can never succeed or has used up its attempts."""
    headers = dict(message.headers or {})
    attempt = int(headers.get(bus.H_ATTEMPT, 0) or 0) + 1
    error = f"{type(exc).__name__}: {exc}"[:500]
    headers.update({bus.H_ATTEMPT: attempt, bus.H_QUEUE: queue, bus.H_ERROR: error})
    publisher.declare_retry_queues(queue)
    if isinstance(exc, ev.InvalidEvent) or attempt >= settings.event_max_attempts:
        log.error("parking message from %s after %d attempt(s): %s", queue, attempt, error)
        publisher.send_raw(message.payload, queue=bus.DLQ, headers=headers)
    else:
        delay = bus.backoff_ms(settings.event_retry_base_ms, attempt)
        log.warning(
            "retrying message from %s in %d ms (attempt %d): %s", queue, delay, attempt, error
        )
        publisher.send_raw(
            message.payload, queue=f"{queue}.retry", headers=headers, expiration_ms=delay
        )
