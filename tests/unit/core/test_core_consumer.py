"""Batched consumption without a broker: acknowledgements in delivery order, several at a
time, and ready messages grouped by tenant."""

from __future__ import annotations

import pytest

from ontrackio.core import consumer
from ontrackio.core.consumer import AckTracker, groups


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
