"""Batched consumption without a broker: acknowledgements in delivery order, several at a
time, ready events grouped by tenant, a pack acknowledged once all its events are settled,
and a failed event retried or parked alone."""

from __future__ import annotations

import pytest

from ontrackio.core import bus, consumer
from ontrackio.core import events as ev
from ontrackio.core.consumer import AckTracker, Delivery, groups, settle
from ontrackio.core.errors import EventRefused


def test_acks_wait_for_every_earlier_delivery():
    t = AckTracker()
    for tag in range(1, 6):
        t.delivered(tag)
    assert t.settle(3) == []  # 1 and 2 still in flight
    assert t.settle(2) == []
    assert t.settle(1) == [(3, True)]  # one ack, multiple, up to 3
    assert t.settle(5) == []
    assert t.settle(4) == [(5, True)]
    assert len(t) == 0


def test_a_requeued_delivery_is_settled_but_never_acknowledged():
    t = AckTracker()
    for tag in (1, 2, 3):
        t.delivered(tag)
    assert t.settle(1) == [(1, True)]
    assert t.settle(3, ack=False) == []  # waits for 2
    assert t.settle(2) == [(2, True)]  # acks up to 2 only: 3 was handed back
    t.delivered(4)
    assert t.settle(4, ack=False) == []
    assert len(t) == 0


def test_tags_are_channel_wide_across_queues():
    t = AckTracker(loose=1000)
    for tag in range(1, 101):
        t.delivered(tag)
    for tag in range(100, 1, -1):
        assert t.settle(tag) == []
    assert t.settle(1) == [(100, True)]


def test_a_slow_delivery_does_not_hold_back_the_window():
    """Behind a delivery in flight, settled ones are acked one by one once `loose` wait,
    so the broker keeps delivering; the slow one is acked on its own when it is done."""
    t = AckTracker(loose=4)
    for tag in range(1, 10):
        t.delivered(tag)
    assert t.settle(2) == [] and t.settle(3) == [] and t.settle(4) == []
    assert t.settle(5) == [(2, False), (3, False), (4, False), (5, False)]
    assert t.settle(6) == []
    assert t.settle(1) == [(6, True)]  # 1 and 6 (2-5 already left the window)
    assert t.settle(7) == [(7, True)]
    assert t.settle(9, ack=False) == [] and t.settle(8) == [(8, True)]
    assert len(t) == 0


def test_settling_twice_or_unknown_tags_sends_nothing():
    t = AckTracker()
    t.delivered(1)
    assert t.settle(1) == [(1, True)]
    assert t.settle(1) == [] and t.settle(42) == []


def body(tenant, n):
    return {"tenant": tenant, "n": n}


def test_groups_by_tenant_in_arrival_order():
    ready = [(body("a", 1), "m1"), (body("b", 2), "m2"), (body("a", 3), "m3")]
    assert groups(ready) == [[ready[0], ready[2]], [ready[1]]]


def test_unreadable_bodies_are_grouped_apart():
    ready = [("not a dict", "m1"), ({"tenant": 7}, "m2"), (body("a", 3), "m3")]
    out = groups(ready)
    assert [ready[0], ready[1]] in out and [ready[2]] in out


@pytest.mark.parametrize("n", [1, 100, 101, 250])
def test_groups_hold_at_most_max_group(n):
    ready = [(body("a", i), f"m{i}") for i in range(n)]
    out = groups(ready)
    assert all(len(g) <= consumer.MAX_GROUP for g in out)
    assert [item for g in out for item in g] == ready


class FakeConsumer:
    def __init__(self):
        self.acked, self.requeued = [], []

    def ack_message(self, message):
        self.acked.append(message)

    def requeue_message(self, message):
        self.requeued.append(message)


class FakeMessage:
    def __init__(self, headers=None):
        self.headers = headers or {}


def test_a_pack_is_acknowledged_once_every_event_is_settled():
    c, m = FakeConsumer(), FakeMessage()
    d = Delivery(m, 3)
    failed = []
    settle(c, d, {"n": 1}, True, None)
    settle(c, d, {"n": 2}, ValueError("boom"), lambda e, h, exc: failed.append(e))
    assert c.acked == [] and failed == [{"n": 2}]  # retried alone, the message still held
    settle(c, d, {"n": 3}, False, None)
    assert c.acked == [m] and c.requeued == []


def test_a_pack_goes_back_to_its_queue_if_a_failed_event_cannot_be_retried():
    c, m = FakeConsumer(), FakeMessage()
    d = Delivery(m, 2)

    def broker_down(envelope, headers, exc):
        raise ConnectionError("down")

    settle(c, d, {"n": 1}, RuntimeError("x"), broker_down)
    settle(c, d, {"n": 2}, True, None)
    assert c.requeued == [m] and c.acked == []


class FakePublisher:
    def __init__(self):
        self.sent = []
        self.declared = {}

    def declare(self, queue):
        self.declared[queue.name] = queue

    def send_raw(self, body, *, queue, headers):
        assert queue in self.declared  # declared before anything is sent to it
        self.sent.append((body, queue, headers, self.declared[queue].queue_arguments))


class Settings:
    event_max_attempts = 3
    event_retry_base_ms = 100


def test_a_failed_event_of_a_pack_is_retried_alone_then_parked():
    p = FakePublisher()
    envelope = {"id": "e1"}
    headers = {bus.H_EVENTS: 5, "other": "kept"}
    consumer.retry_or_park(p, Settings, "q", envelope, headers, RuntimeError("later"))
    body, queue, sent_headers, args = p.sent[-1]
    assert (body, queue) == (envelope, "q.retry.100")
    assert args["x-message-ttl"] == 100 and args["x-dead-letter-routing-key"] == "q"
    assert bus.H_EVENTS not in sent_headers and sent_headers["other"] == "kept"
    assert sent_headers[bus.H_ATTEMPT] == 1 and "RuntimeError: later" in sent_headers[bus.H_ERROR]
    assert headers == {bus.H_EVENTS: 5, "other": "kept"}  # the message's own are untouched
    consumer.retry_or_park(p, Settings, "q", envelope, sent_headers, RuntimeError("later"))
    assert p.sent[-1][1] == "q.retry.200" and p.sent[-1][3]["x-message-ttl"] == 200
    consumer.retry_or_park(p, Settings, "q", envelope, p.sent[-1][2], RuntimeError("later"))
    assert p.sent[-1][1] == bus.DLQ and p.sent[-1][2][bus.H_ATTEMPT] == 3


def test_an_invalid_event_is_parked_at_once():
    p = FakePublisher()
    consumer.retry_or_park(p, Settings, "q", [], {}, ev.InvalidEvent("bad"))
    assert p.sent[-1][1] == bus.DLQ and p.sent[-1][2][bus.H_ATTEMPT] == 1


def test_a_refused_event_is_parked_at_once_with_its_reason():
    p = FakePublisher()
    consumer.retry_or_park(p, Settings, "q", {"id": "e1"}, {}, EventRefused("tenant is active"))
    body, queue, headers, _ = p.sent[-1]
    assert queue == bus.DLQ and headers[bus.H_ATTEMPT] == 1
    assert headers[bus.H_ERROR] == "EventRefused: tenant is active"
