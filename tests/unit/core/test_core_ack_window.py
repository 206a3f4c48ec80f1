"""Batched consumption at its edges, without a broker: the default window of loose
acknowledgements, the queue consumer's acknowledgements on a live, closed or failing channel,
a pack's events handed out one by one, a failed worker failing every event of its group, and
what a retry carries (attempt count, truncated error). Written to kill mutants that survived
the mutation check (docs/testing.md)."""

from __future__ import annotations

import pytest

from ontrackio.core import bus, consumer
from ontrackio.core.consumer import AckTracker, BatchEventHandler, BatchQueueConsumer, Delivery
from tests.unit.core.test_core_consumer import FakeConsumer


def test_by_default_thirty_two_settled_deliveries_wait_behind_a_slow_one():
    t = AckTracker()
    for tag in range(1, 40):
        t.delivered(tag)
    for tag in range(2, 33):  # 31 settled behind delivery 1, still in flight
        assert t.settle(tag) == []
    assert t.settle(33) == [(tag, False) for tag in range(2, 34)]  # the 32nd: one by one
    assert t.settle(1) == [(1, True)]


def test_settling_an_unknown_or_settled_tag_leaves_nothing_behind():
    t = AckTracker(loose=2)
    t.delivered(1)
    assert t.settle(1) == [(1, True)]
    assert t.settle(1) == [] and t.settle(42) == [] and t.settle(43) == []
    assert len(t) == 0  # nothing recorded for tags the channel never delivered


def test_the_loose_count_restarts_after_in_order_acks_and_after_each_flush():
    t = AckTracker(loose=3)
    for tag in range(1, 12):
        t.delivered(tag)
    assert t.settle(1) == [(1, True)] and t.settle(2) == [(2, True)]  # none left waiting
    assert t.settle(4) == [] and t.settle(5) == []  # behind 3
    assert t.settle(6) == [(4, False), (5, False), (6, False)]  # the third one waiting
    assert t.settle(7) == [] and t.settle(8) == []  # counting from zero again
    assert t.settle(9) == [(7, False), (8, False), (9, False)]
    assert t.settle(3) == [(3, True)]  # 4-9 were acked one by one
    assert len(t) == 2  # 10 and 11, still in flight


def test_deliveries_acked_in_order_do_not_count_towards_the_loose_window():
    t = AckTracker(loose=4)
    for tag in range(1, 6):
        t.delivered(tag)
    assert t.settle(1) == [(1, True)]  # in order: nothing left waiting
    assert t.settle(3) == [] and t.settle(4) == []  # two behind 2, fewer than four
    assert t.settle(5) == []


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
    assert collector.collected == [({"tag": m.delivery_tag}, m) for m in messages]
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


def test_a_requeued_delivery_is_never_covered_by_a_later_multiple_ack():
    qc, channel = BatchQueueConsumer(), Channel()
    first, second = deliver(qc, channel, [1, 2])
    qc.requeue_message(second)
    qc.ack_message(first)
    assert second.requeued and channel.acks == [(1, True)]  # not up to 2: it was handed back


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


def handler(failure=None) -> BatchEventHandler:
    h = BatchEventHandler("identity", "identity.user_created", failure=failure)
    h._ready = consumer.LightQueue()
    return h


def test_the_handler_keeps_nameko_options_and_its_failure_callback():
    def failure(queue, envelope, headers, exc):
        pass

    h = BatchEventHandler(
        "identity", "identity.user_created", handler_type="broadcast", failure=failure
    )
    assert h.handler_type == "broadcast" and h._failure is failure


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
    recorder, failed = FakeConsumer(), []
    h = handler(lambda queue, envelope, headers, exc: failed.append((queue, envelope, exc)))
    h.queue_consumer = recorder
    h.queue = bus.Queue("q")
    boom = RuntimeError("worker died")
    group = [({"n": 1}, Delivery(Message(None, 1), 1)), ({"n": 2}, Delivery(Message(None, 2), 1))]
    assert h.handle_batch(group, None, exc_info=(RuntimeError, boom, None)) == (
        None,
        (RuntimeError, boom, None),
    )
    assert failed == [("q", {"n": 1}, boom), ("q", {"n": 2}, boom)]
    assert [m.delivery_tag for m in recorder.acked] == [1, 2]  # retried alone: acked


def test_a_handled_group_settles_each_event_with_its_own_outcome():
    recorder, failed = FakeConsumer(), []
    h = handler(lambda queue, envelope, headers, exc: failed.append((envelope, headers)))
    h.queue_consumer = recorder
    h.queue = bus.Queue("q")
    d = Delivery(Message(None, 1, headers={bus.H_ATTEMPT: 2}), 3)
    group = [({"n": 1}, d), ({"n": 2}, d), ({"n": 3}, d)]
    h.handle_batch(group, None, result=[True, ValueError("bad"), False])
    # the failure callback gets the message's headers: they carry the attempts so far
    assert failed == [({"n": 2}, {bus.H_ATTEMPT: 2})]
    assert [m.delivery_tag for m in recorder.acked] == [1]


def test_a_handler_returning_too_few_outcomes_is_an_error_not_an_unsettled_message():
    h, recorder = handler(lambda queue, envelope, headers, exc: None), FakeConsumer()
    h.queue_consumer = recorder
    h.queue = bus.Queue("q")
    d = Delivery(Message(None, 1), 2)
    with pytest.raises(ValueError):
        h.handle_batch([({"n": 1}, d), ({"n": 2}, d)], None, result=[True])


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
