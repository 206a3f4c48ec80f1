"""RabbitMQ: publishing events with publisher confirms, retries, and the dead-letter queue.

Exchanges follow nameko's convention ("<service>.events", topic, durable) so nameko
event handlers in the workers consume what this module publishes.

Events published together with one routing key share a message (a pack: its body is the
list of their envelopes). A handler that fails on an event is retried with exponential
backoff: that event alone is re-published to "<queue>.retry.<delay ms>", a queue whose
messages all live that long (x-message-ttl) and then dead-letter to the handler's own
queue. One queue per delay keeps each in expiry order: in a single queue with
per-message expiry, a long delay at its head held back the shorter ones behind it. After
`max_attempts` it is parked in the dead-letter queue "ontrack.dlq" with the queue it came
from and the last error, so the DLQ holds one event per message; `ontrack dlq
list|replay` works on that queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import kombu
from kombu import Exchange, Queue

from ontrackio.core.events import Event

log = logging.getLogger(__name__)

DLQ = "ontrack.dlq"
H_ATTEMPT = "x-ontrack-attempt"
H_QUEUE = "x-ontrack-queue"
H_ERROR = "x-ontrack-error"
H_EVENTS = "x-ontrack-events"  # on a pack: how many envelopes its body holds
MAX_PACK = 100  # events in one message
RETRY_QUEUE_EXPIRES_MS = 600_000  # > the longest backoff (60 s), so no message dies with it
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


def events_exchange(service: str) -> Exchange:
    return Exchange(f"{service}.events", type="topic", durable=True)


def connect(amqp_url: str) -> kombu.Connection:
    return kombu.Connection(
        amqp_url, transport_options={"confirm_publish": True}, connect_timeout=5, heartbeat=0
    )


class Nacked(Exception):
    """The broker refused (nacked) a published message."""


class Publisher:
    """Publishes with publisher confirms; safe to share between threads.

    Confirms are pipelined: a batch is published, then the broker's acks for all of it
    are awaited together (with kombu's per-message confirm each publish waited for its own
    ack, which capped a publisher at a few hundred messages per second).
    """

    CONFIRM_TIMEOUT = 10.0

    def __init__(self, amqp_url: str):
        self._url = amqp_url
        self._lock = threading.Lock()
        self._conn: kombu.Connection | None = None
        self._producer: kombu.Producer | None = None
        self._next_tag = 1
        self._unacked: set[int] = set()
        self._nacked: set[int] = set()

    def _ensure(self) -> kombu.Producer:
        if self._producer is None:
            self._conn = kombu.Connection(self._url, connect_timeout=5, heartbeat=0)
            producer = kombu.Producer(self._conn)
            channel = producer.channel
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._next_tag, self._unacked, self._nacked = 1, set(), set()
            self._producer = producer
        return self._producer

    def _on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._unacked = {t for t in self._unacked if t > tag}
        else:
            self._unacked.discard(tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        done = {t for t in self._unacked if t <= tag} if multiple else {tag}
        self._nacked |= done
        self._unacked -= done

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.release()
        except Exception:  # noqa: BLE001 - a dead connection may fail to close
            pass
        self._conn = self._producer = None

    def _send(self, body: Any, **kw: Any) -> int:
        tag = self._next_tag
        self._next_tag += 1
        self._unacked.add(tag)
        self._producer.publish(body, serializer="json", delivery_mode=2, **kw)
        return tag

    def _confirm(self, tags: list[int]) -> None:
        """Wait for the broker's verdict on every tag; raise if one was refused."""
        wanted = set(tags)
        deadline = time.monotonic() + self.CONFIRM_TIMEOUT
        while wanted & self._unacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no publisher confirm from the broker")
            self._conn.drain_events(timeout=remaining)
        refused = wanted & self._nacked
        if refused:
            self._nacked -= refused
            raise Nacked(f"the broker refused {len(refused)} message(s)")

    def _with_retry(self, send) -> None:
        """Run `send(producer) -> tags` and confirm them; on failure reconnect once and
        resend everything (the consumers' inboxes absorb duplicates)."""
        with self._lock:
            for attempt in range(2):
                try:
                    self._confirm(send(self._ensure()))
                    return
                except Exception:
                    self._reset()
                    if attempt == 1:
                        raise

    def publish(self, events: list[Event]) -> None:
        """Publish every event, confirmed by the broker; raises if that cannot be done.

        Events with the same routing key travel together: one message per key (and per
        MAX_PACK events) whose body is the list of their envelopes, in the order given. A
        lone event is a message of its own with its envelope as the body. The broker's
        work, the consumers' frames and acknowledgements are per message, so at a few
        hundred events/s a pack costs about what one event did.
        """

        def send(producer: kombu.Producer) -> list[int]:
            declared: set[str] = set()
            tags = []
            for (source, name), pack in packs(events):
                exchange = events_exchange(source)
                if exchange.name not in declared:
                    producer.maybe_declare(exchange)
                    declared.add(exchange.name)
                if len(pack) == 1:
                    body: Any = pack[0].to_wire()
                    headers = {"x-ontrack-event-id": pack[0].id, **pack[0].trace}
                else:
                    body = [e.to_wire() for e in pack]
                    headers = {H_EVENTS: len(pack)}
                tags.append(self._send(body, exchange=exchange, routing_key=name, headers=headers))
            return tags

        self._with_retry(send)

    def send_raw(self, body: Any, *, queue: str, headers: dict[str, Any]) -> None:
        """Publish to a queue by name (default exchange): retries, replays, parking."""
        self._with_retry(
            lambda producer: [self._send(body, exchange="", routing_key=queue, headers=headers)]
        )

    def declare(self, queue: Queue) -> None:
        """Declare `queue` (idempotent), e.g. a retry queue or the dead-letter queue."""
        with self._lock:
            try:
                queue(self._ensure().channel).declare()
            except Exception:
                self._reset()
                raise

    def close(self) -> None:
        with self._lock:
            self._reset()


def packs(events: list[Event]) -> list[tuple[tuple[str, str], list[Event]]]:
    """`events` by (source, routing key) in order of first appearance, each in the order
    given and cut into lists of at most MAX_PACK."""
    by_key: dict[tuple[str, str], list[Event]] = {}
    for event in events:
        by_key.setdefault((event.source, event.name), []).append(event)
    return [
        (key, same[i : i + MAX_PACK])
        for key, same in by_key.items()
        for i in range(0, len(same), MAX_PACK)
    ]


def dead_letter_queue() -> Queue:
    return Queue(DLQ, durable=True)


def retry_queue(queue: str, delay_ms: int) -> Queue:
    """Where a failed message of `queue` waits `delay_ms` before going back to `queue`. An
    idle one is deleted after ten minutes (long after its last message has left it)."""
    return Queue(
        f"{queue}.retry.{delay_ms}",
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
            "x-message-ttl": delay_ms,
            "x-expires": RETRY_QUEUE_EXPIRES_MS,
        },
    )


def backoff_ms(base_ms: int, attempt: int) -> int:
    """Delay before retry number `attempt` (1-based): base, 2×base, 4×base… capped at 60 s."""
    return min(base_ms * 2 ** (attempt - 1), 60_000)


@dataclass(frozen=True)
class Parked:
    delivery_tag: int
    event_id: str
    type: str
    tenant: str
    queue: str
    attempts: int
    error: str
    body: Any


def _parked(message: kombu.Message) -> Parked:
    headers = message.headers or {}
    try:
        body = json.loads(message.body) if isinstance(message.body, (bytes, str)) else message.body
    except ValueError:
        body = message.body if isinstance(message.body, str) else repr(message.body)
    meta = body if isinstance(body, dict) else {}
    return Parked(
        message.delivery_tag,
        str(meta.get("id", "")),
        str(meta.get("type", "")),
        str(meta.get("tenant", "")),
        str(headers.get(H_QUEUE, "")),
        int(headers.get(H_ATTEMPT, 0)),
        str(headers.get(H_ERROR, "")),
        body,
    )


def queue_depth(amqp_url: str, queue: str) -> int:
    """Messages ready in `queue` (a passive declare: nothing is created)."""
    with connect(amqp_url) as conn:
        channel = conn.channel()
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        finally:
            channel.close()


def dlq_list(amqp_url: str, limit: int = 1000) -> list[Parked]:
    """What is parked in the dead-letter queue; nothing is removed."""
    with connect(amqp_url) as conn:
        channel = conn.channel()
        queue = dead_letter_queue()(channel)
        queue.declare()
        found = []
        for _ in range(limit):
            message = queue.get(no_ack=False)
            if message is None:
                break
            found.append(_parked(message))
        channel.close()  # unacknowledged messages go back to the queue, in order
    return found


def dlq_replay(amqp_url: str, event_ids: set[str] | None = None) -> list[Parked]:
    """Send parked messages back to the queue they failed in (all, or those listed)."""
    replayed = []
    with connect(amqp_url) as conn:
        channel = conn.channel()
        queue = dead_letter_queue()(channel)
        queue.declare()
        producer = kombu.Producer(channel)
        while True:
            message = queue.get(no_ack=False)
            if message is None:
                break
            parked = _parked(message)
            if (event_ids is not None and parked.event_id not in event_ids) or not parked.queue:
                continue  # stays parked when the channel closes
            producer.publish(
                parked.body,
                exchange="",
                routing_key=parked.queue,
                serializer="json",
                delivery_mode=2,
                headers={H_ATTEMPT: 0, "x-ontrack-replayed": True},
            )
            message.ack()
            replayed.append(parked)
        channel.close()
    return replayed
