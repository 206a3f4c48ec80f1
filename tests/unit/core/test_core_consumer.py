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
    assert t.settle(3) is None  # 1 and 2 still in flight
    assert t.settle(2) is None
    assert t.settle(1) == 3  # one ack, multiple, up to 3
    assert t.settle(5) is None
    assert t.settle(4) == 5
    assert len(t) == 0


def test_a_requeued_delivery_is_settled_but_never_acknowledged():
    t = AckTracker()
    for tag in (1, 2, 3):
        t.delivered(tag)
    assert t.settle(1) == 1
    assert t.settle(3, ack=False) is None  # waits for 2
    assert t.settle(2) == 2  # acks up to 2 only: 3 was handed back
    t.delivered(4)
    assert t.settle(4, ack=False) is None
    assert len(t) == 0


def test_tags_are_channel_wide_across_queues():
    t = AckTracker()
    for tag in range(1, 101):
        t.delivered(tag)
    for tag in range(100, 1, -1):
        assert t.settle(tag) is None
    assert t.settle(1) == 100


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
