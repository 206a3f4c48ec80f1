"""Group commit: one transaction for a tenant's concurrent events, a redelivery skipped,
and a failing event isolated from the others in its batch (with a fake unit of work: no
database)."""

from __future__ import annotations

import functools
import threading
import time
from contextlib import contextmanager
from unittest.mock import patch

from opentelemetry import context as otel_context

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core.directory import TenantInfo
from ontrackio.core.groupcommit import GroupCommitter, Work
from ontrackio.identity.v1 import events_pb2

INFO = TenantInfo("acme", "active", "main", "business")


class FakeUnit:
    def __init__(self, db):
        self.db, self.rows, self.inbox = db, [], []

    def first_deliveries(self, events):
        fresh = {e.id for e in events} - self.db.inbox
        self.inbox += list(fresh)
        return set(fresh)


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
    return DEPLOYMENT.events.new(
        "identity.user_deactivated", "acme", events_pb2.UserDeactivated(user_id=str(n))
    )


def work(ev, effect) -> Work:
    return Work(ev, ev.message(), effect, otel_context.get_current())


def run_concurrently(committer, items):
    """Each (event, effect) handed over by a thread of its own, a little apart."""
    results = {}

    def go(ev, effect):
        results[ev.id] = committer.apply(INFO, [work(ev, effect)])[0]

    threads = [threading.Thread(target=go, args=item) for item in items]
    for t in threads:
        t.start()
        time.sleep(0.005)
    for t in threads:
        t.join(5)
    return results


def record(u, payloads):
    u.rows += [m.user_id for m in payloads]


def test_concurrent_events_share_commits_and_apply_once():
    db = FakeDatabases()
    committer = GroupCommitter(db)
    events = [event(i) for i in range(8)]
    results = run_concurrently(committer, [(e, record) for e in events])
    assert all(results[e.id] is True for e in events)
    assert sorted(db.rows, key=int) == [str(i) for i in range(8)]
    assert db.commits < 8  # batched
    again = run_concurrently(committer, [(events[0], record)])
    assert again[events[0].id] is False and len(db.rows) == 8  # a redelivery is skipped


def test_a_batch_applies_each_event_once_even_if_it_holds_copies():
    db = FakeDatabases()
    committer = GroupCommitter(db)
    first, second = event(1), event(2)
    outcomes = committer.apply(
        INFO, [work(first, record), work(first, record), work(second, record)]
    )
    assert outcomes == [True, False, True]
    assert sorted(db.rows) == ["1", "2"] and db.commits == 1


def test_a_failing_event_fails_alone():
    db = FakeDatabases()
    committer = GroupCommitter(db)
    events = [event(i) for i in range(6)]

    def poison(u, payloads):
        raise ValueError("bad event")

    outcomes = committer.apply(
        INFO, [work(e, poison if i == 3 else record) for i, e in enumerate(events)]
    )
    assert isinstance(outcomes[3], ValueError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [True] * 5
    assert sorted(db.rows, key=int) == ["0", "1", "2", "4", "5"]
    assert db.commits == 5  # the batch failed as a whole, then each event ran on its own
    assert isinstance(committer.apply(INFO, [work(events[3], poison)])[0], ValueError)


def test_the_committing_caller_returns_after_its_own_batch():
    """Whoever commits hands over to the oldest waiter instead of serving everyone."""
    db = FakeDatabases()
    committer = GroupCommitter(db)
    returned: dict[str, float] = {}
    start = time.monotonic()

    def go(ev):
        committer.apply(INFO, [work(ev, record)])
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


def test_a_caller_with_more_events_than_one_batch_commits_them_all(monkeypatch):
    monkeypatch.setattr("ontrackio.core.groupcommit.MAX_BATCH", 3)
    db = FakeDatabases()
    committer = GroupCommitter(db)
    outcomes = committer.apply(INFO, [work(event(i), record) for i in range(7)])
    assert outcomes == [True] * 7 and db.commits == 3
    assert sorted(db.rows, key=int) == [str(i) for i in range(7)]


def test_an_effect_takes_its_consecutive_events_at_once_in_order():
    """Runs of one effect are applied together; events of another effect in between keep
    their place (a leaver is never applied before its joiner)."""
    db = FakeDatabases()
    committer = GroupCommitter(db)
    calls = []

    def joiners(u, payloads):
        calls.append(("join", [m.user_id for m in payloads]))

    def leavers(u, payloads):
        calls.append(("leave", [m.user_id for m in payloads]))

    effects = [joiners, joiners, leavers, joiners, joiners, joiners]
    outcomes = committer.apply(INFO, [work(event(i), f) for i, f in enumerate(effects)])
    assert outcomes == [True] * 6 and db.commits == 1
    assert calls == [("join", ["0", "1"]), ("leave", ["2"]), ("join", ["3", "4", "5"])]


def test_events_an_effect_emits_continue_their_causes_trace():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from ontrackio.core.db.tenantdb import UnitOfWork

    tracer = TracerProvider().get_tracer("test")
    spans = [tracer.start_span(f"consume {i}") for i in range(3)]
    events = [event(i) for i in range(3)]
    emitted = {}

    class Unit(FakeUnit, UnitOfWork):
        def __init__(self, db):
            FakeUnit.__init__(self, db)
            UnitOfWork.__init__(self, conn=None, tenant="acme", types=DEPLOYMENT.events)

    class Databases(FakeDatabases):
        @contextmanager
        def unit_of_work(self, info):
            yield Unit(self)

    def follow_up(u, payloads):
        for m in payloads:
            with patch("ontrackio.core.outbox.add"):  # no database here
                emitted[m.user_id] = u.emit("identity.user_deactivated", m, cause=m).trace

    items = [
        Work(e, e.message(), follow_up, trace.set_span_in_context(s))
        for e, s in zip(events, spans, strict=True)
    ]
    assert GroupCommitter(Databases()).apply(INFO, items) == [True] * 3
    for i, s in enumerate(spans):
        trace_id = format(s.get_span_context().trace_id, "032x")
        assert trace_id in emitted[str(i)]["traceparent"]

    def implicit(u, payloads):  # one payload: its trace without naming the cause
        with patch("ontrackio.core.outbox.add"):
            emitted["one"] = u.emit("identity.user_deactivated", payloads[0]).trace

    alone = event(9)
    span = tracer.start_span("consume alone")
    item = Work(alone, alone.message(), implicit, trace.set_span_in_context(span))
    assert GroupCommitter(Databases()).apply(INFO, [item]) == [True]
    assert format(span.get_span_context().trace_id, "032x") in emitted["one"]["traceparent"]


def test_one_handler_of_several_service_instances_is_one_effect():
    """nameko binds a handler to a new service instance per worker: events queued by
    concurrent workers still share one effect call."""
    calls = []

    class Service:
        def effect(self, u, payloads):
            calls.append([m.user_id for m in payloads])

    db = FakeDatabases()
    committer = GroupCommitter(db)
    events = [event(i) for i in range(4)]
    outcomes = committer.apply(
        INFO, [work(e, functools.partial(Service.effect, Service())) for e in events]
    )
    assert outcomes == [True] * 4 and calls == [["0", "1", "2", "3"]]
