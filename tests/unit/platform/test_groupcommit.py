"""Group commit: one transaction for a tenant's concurrent events, and a failing event
isolated from the others in its batch (with a fake unit of work: no database)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from ontrackio.core.directory import TenantInfo
from ontrackio.core.events import new
from ontrackio.core.groupcommit import GroupCommitter
from ontrackio.identity.v1 import events_pb2

INFO = TenantInfo("acme", "active", "main", "business")


class FakeUnit:
    def __init__(self, db):
        self.db, self.rows, self.inbox = db, [], []

    def first_delivery(self, event):
        if event.id in self.db.inbox or event.id in self.inbox:
            return False
        self.inbox.append(event.id)
        return True


class FakeDatabases:
    """Commits a unit's rows only if its block ends without an exception."""

    def __init__(self):
        self.inbox: set[str] = set()
        self.rows: list[str] = []
        self.commits = 0

    @contextmanager
    def unit_of_work(self, info):
        u = FakeUnit(self)
        yield u
        time.sleep(0.05)  # a commit takes a while: others queue up behind it
        self.inbox.update(u.inbox)
        self.rows += u.rows
        self.commits += 1


def event(n: int):
    return new("identity.user_deactivated", "acme", events_pb2.UserDeactivated(user_id=str(n)))


def run_concurrently(committer, items):
    results, errors = {}, {}

    def go(ev, effect):
        try:
            results[ev.id] = committer.apply(INFO, ev, effect)
        except Exception as exc:  # noqa: BLE001 - collected
            errors[ev.id] = exc

    threads = [threading.Thread(target=go, args=item) for item in items]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join(5)
    return results, errors


def record(u, msg):
    u.rows.append(msg.user_id)


def test_concurrent_events_share_commits_and_apply_once():
    db = FakeDatabases()
    committer = GroupCommitter(db)
    events = [event(i) for i in range(8)]
    results, errors = run_concurrently(committer, [(e, record) for e in events])
    assert errors == {} and all(results[e.id] for e in events)
    assert sorted(db.rows, key=int) == [str(i) for i in range(8)]
    assert db.commits < 8  # batched
    again, _ = run_concurrently(committer, [(events[0], record)])
    assert again[events[0].id] is False and len(db.rows) == 8  # a redelivery is skipped


def test_a_failing_event_fails_alone():
    db = FakeDatabases()
    committer = GroupCommitter(db)
    events = [event(i) for i in range(6)]

    def poison(u, msg):
        raise ValueError("bad event")

    items = [(e, poison if i == 3 else record) for i, e in enumerate(events)]
    results, errors = run_concurrently(committer, items)
    assert set(errors) == {events[3].id} and isinstance(errors[events[3].id], ValueError)
    assert sorted(db.rows, key=int) == ["0", "1", "2", "4", "5"]
    with pytest.raises(ValueError):
        committer.apply(INFO, events[3], poison)


def test_the_committing_handler_returns_after_its_own_batch():
    """Whoever commits hands over to the oldest waiter instead of serving everyone."""
    db = FakeDatabases()
    committer = GroupCommitter(db)
    returned: dict[str, float] = {}
    start = time.monotonic()

    def go(ev):
        committer.apply(INFO, ev, record)
        returned[ev.id] = time.monotonic() - start

    first = event(0)
    threads = [threading.Thread(target=go, args=(first,))]
    threads[0].start()
    time.sleep(0.01)  # the first is committing (50 ms); the rest queue behind it
    for i in range(1, 6):
        t = threading.Thread(target=go, args=(event(i),))
        t.start()
        threads.append(t)
    for t in threads:
        t.join(5)
    assert returned[first.id] < 0.09  # one commit, not the next batch as well
    assert len(db.rows) == 6 and db.commits == 2
