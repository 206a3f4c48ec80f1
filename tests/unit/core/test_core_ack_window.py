"""Batched consumption at its edges, without a broker: the default window of loose
acknowledgements, the queue consumer's acknowledgements on a live, closed or failing channel,
a pack's events handed out one by one, a failed worker failing every event of its group, and
what a retry carries (attempt count, truncated error). Written to kill mutants that survived
the mutation check (docs/testing.md)."""

from __future__ import annotations

from ontrackio.core import bus, consumer
from ontrackio.core.consumer import AckTracker, BatchEventHandler, BatchQueueConsumer, Delivery


def test_by_default_thirty_two_settled_deliveries_wait_behind_a_slow_one():
    t = AckTracker()
    for tag in range(1, 40):
        t.delivered(tag)
    for tag in range(2, 33):  # 31 settled behind delivery 1, still in flight
        assert t.settle(tag) == []
    assert t.settle(33) == [(tag, False) for tag in range(2, 34)]  # the 32nd: one by one
    assert t.settle(1) == [(1, True)]


def test_a_requeued_delivery_in_the_loose_window_is_never_acknowledged():
    t = AckTracker(loose=2)
    for tag in (1, 2, 3):
        t.delivered(tag)
    assert t.settle(2, ack=False) == []
    assert t.settle(3) == [(3, False)]  # 2 was handed back: only 3 is acked
    assert t.settle(1) == [(1, True)] and len(t) == 0


class Channel:
    def __init__(self, connection=True, fail=False):
        self.connection, self.fail, self.acks = connection, fail, []

    def basic_ack(self, tag, multiple):
        if self.fail:
            raise ConnectionError("closing")
        self.acks.append((tag, multiple))


class Message:
    def __init__(self, channel, tag, headers=None):
        self.channel, self.delivery_tag, self.headers = channel, tag, headers or {}
        self.requeued = False

    def requeue(self):
        self.requeued = True


class Collector:
    def __init__(self):
        self.collected = []

    def collect(self, body, message):
        self.collected.append((body, message))


def deliver(qc: BatchQueueConsumer, channel: Channel, tags) -> list[Message]:
    collector = Collector()
    messages = [Message(channel, tag) for tag in tags]
    for m in messages:
        qc.handle_message(collector, {"tag": m.delivery_tag}, m)
    assert [b for b, _ in collector.collected] == [{"tag": t} for t in tags]
    return messages


def test_the_queue_consumer_acks_in_order_and_hands_back_what_is_requeued():
    qc, channel = BatchQueueConsumer(), Channel()
    first, second, third = deliver(qc, channel, [1, 2, 3])
    qc.ack_message(second)
    assert channel.acks == []  # 1 is still in flight
    qc.requeue_message(first)
    assert first.requeued and channel.acks == [(2, True)]
    qc.ack_message(third)
    assert channel.acks == [(2, True), (3, True)] and not third.requeued


def test_a_closed_or_unknown_channel_is_left_to_the_broker():
    qc = BatchQueueConsumer()
    closed = Channel(connection=None)
    (m,) = deliver(qc, closed, [1])
    qc.requeue_message(m)
    assert closed.acks == [] and not m.requeued  # redelivered by the broker anyway
    stranger = Message(Channel(), 7)
    qc.ack_message(stranger)
    assert stranger.channel.acks == []


def test_an_ack_on_a_closing_channel_is_swallowed():
    qc, failing = BatchQueueConsumer(), Channel(fail=True)
    (m,) = deliver(qc, failing, [1])
    qc.ack_message(m)  # no exception: what was not acked comes back
    assert failing.acks == []


class Recorder:
    def __init__(self):
        self.acked, self.requeued = [], []

    def ack_message(self, message):
        self.acked.append(message)

    def requeue_message(self, message):
        self.requeued.append(message)


def handler() -> BatchEventHandler:
    h = BatchEventHandler("identity", "identity.user_created", failure=None)
    h._ready = consumer.LightQueue()
    return h


def test_a_pack_is_handed_out_event_by_event_sharing_one_delivery():
    h, message = handler(), object()
    h.collect([{"n": 1}, {"n": 2}], message)
    first, second = h._ready.get_nowait(), h._ready.get_nowait()
    assert h._ready.empty()
    assert [first[0], second[0]] == [{"n": 1}, {"n": 2}]
    assert first[1] is second[1] and first[1].message is message and first[1].remaining == 2


def test_a_single_event_is_one_delivery_of_one():
    h = handler()
    h.collect({"n": 1}, "m")
    (envelope, delivery) = h._ready.get_nowait()
    assert envelope == {"n": 1} and delivery.remaining == 1


def test_a_worker_that_raised_fails_every_event_of_its_group():
    h, recorder, failed = handler(), Recorder(), []
    h.queue_consumer = recorder
    h.queue = bus.Queue("q")
    h._failure = lambda queue, envelope, headers, exc: failed.append((queue, envelope, exc))
    boom = RuntimeError("worker died")
    group = [({"n": 1}, Delivery(Message(None, 1), 1)), ({"n": 2}, Delivery(Message(None, 2), 1))]
    assert h.handle_batch(group, None, exc_info=(RuntimeError, boom, None)) == (
        None,
        (RuntimeError, boom, None),
    )
    assert failed == [("q", {"n": 1}, boom), ("q", {"n": 2}, boom)]
    assert [m.delivery_tag for m in recorder.acked] == [1, 2]  # retried alone: acked


def test_a_handled_group_settles_each_event_with_its_own_outcome():
    h, recorder, failed = handler(), Recorder(), []
    h.queue_consumer = recorder
    h.queue = bus.Queue("q")
    h._failure = lambda queue, envelope, headers, exc: failed.append(envelope)
    d = Delivery(Message(None, 1), 3)
    group = [({"n": 1}, d), ({"n": 2}, d), ({"n": 3}, d)]
    h.handle_batch(group, None, result=[True, ValueError("bad"), False])
    assert failed == [{"n": 2}] and [m.delivery_tag for m in recorder.acked] == [1]


class Publisher:
    def __init__(self):
        self.sent = []

    def declare(self, queue):
        pass

    def send_raw(self, body, *, queue, headers):
        self.sent.append((queue, headers))


class Settings:
    event_max_attempts = 3
    event_retry_base_ms = 100


def test_a_retry_counts_from_a_missing_or_empty_attempt_header():
    p = Publisher()
    consumer.retry_or_park(p, Settings, "q", {}, None, RuntimeError("x"))
    consumer.retry_or_park(p, Settings, "q", {}, {bus.H_ATTEMPT: None}, RuntimeError("x"))
    assert [(q, h[bus.H_ATTEMPT], h[bus.H_QUEUE]) for q, h in p.sent] == [
        ("q.retry.100", 1, "q"),
        ("q.retry.100", 1, "q"),
    ]


def test_the_error_a_retry_carries_is_cut_at_five_hundred_characters():
    p = Publisher()
    consumer.retry_or_park(p, Settings, "q", {}, {}, RuntimeError("x" * 1000))
    error = p.sent[-1][1][bus.H_ERROR]
    assert len(error) == 500 and error.startswith("RuntimeError: xxx")


def test_the_attempt_before_the_last_is_still_retried():
    p = Publisher()
    consumer.retry_or_park(p, Settings, "q", {}, {bus.H_ATTEMPT: 1}, RuntimeError("x"))
    assert p.sent[-1][0] == "q.retry.200" and p.sent[-1][1][bus.H_ATTEMPT] == 2
