"""Group commit: one transaction for a tenant's concurrent events, a redelivery skipped,
and a failing event isolated from the others in its batch (with a fake unit of work: no
database)."""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from unittest.mock import patch

from opentelemetry import context as otel_context

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core.directory import TenantInfo
from ontrackio.core.groupcommit import GroupCommitter, Work
from ontrackio.identity.v1 import events_pb2
from tests.helpers import eventually

INFO = TenantInfo("acme", "active", "main", "business")


class FakeUnit:
    def __init__(self, db):
        self.db, self.rows, self.inbox = db, [], []

    def first_deliveries(self, events):
        fresh = {e.id for e in events} - self.db.inbox
        self.inbox += list(fresh)
        return set(fresh)


class FakeDatabases:
    """Commits a unit's rows only if its block ends without an exception.

    With `gated`, each commit first says it has started (`started`, a semaphore released
    once per commit) and then waits for the test to let it finish (`finish.release()`), so
    a test decides what queues up behind a commit instead of guessing how long one takes.
    """

    def __init__(self, gated: bool = False):
        self.inbox: set[str] = set()
        self.rows: list[str] = []
        self.commits = 0
        self.gated = gated
        self.started = threading.Semaphore(0)
        self.finish = threading.Semaphore(0)

    @contextmanager
    def unit_of_work(self, info):
        u = FakeUnit(self)
        yield u
        if self.gated:
            self.started.release()
            assert self.finish.acquire(timeout=10), "the test never let the commit finish"
        self.inbox.update(u.inbox)
        self.rows += u.rows
        self.commits += 1

    def commit_started(self) -> None:
        assert self.started.acquire(timeout=10), "no commit started"


def event(n: int):
    return DEPLOYMENT.events.new(
        "identity.user_deactivated", "acme", events_pb2.UserDeactivated(user_id=str(n))
    )


def work(ev, effect) -> Work:
    return Work(ev, ev.message(), effect, otel_context.get_current())


def queued(committer: GroupCommitter, slug: str = "acme") -> int:
    """Work items waiting behind the tenant's commit in progress (read under the
    committer's lock; for synchronisation only)."""
    with committer._lock:
        return len(committer._queues.get(slug, []))


def in_threads(committer, items, results) -> list[threading.Thread]:
    """Each (event, effect) handed over by a thread of its own; `results[id]` its outcome."""

    def go(ev, effect):
        results[ev.id] = committer.apply(INFO, [work(ev, effect)])[0]

    threads = [threading.Thread(target=go, args=item, daemon=True) for item in items]
    for t in threads:
        t.start()
    return threads


def joined(threads) -> None:
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a caller is still waiting"


def record(u, payloads):
    u.rows += [m.user_id for m in payloads]


def test_concurrent_events_share_commits_and_apply_once():
    """Seven events handed over while the first one's commit is in progress go in one
    commit after it: two commits for eight events."""
    db = FakeDatabases(gated=True)
    committer = GroupCommitter(db)
    events = [event(i) for i in range(8)]
    results: dict = {}
    threads = in_threads(committer, [(events[0], record)], results)
    db.commit_started()
    threads += in_threads(committer, [(e, record) for e in events[1:]], results)
    eventually(lambda: queued(committer) == 7, timeout=10)
    db.finish.release(2)
    joined(threads)
    assert all(results[e.id] is True for e in events)
    assert sorted(db.rows, key=int) == [str(i) for i in range(8)]
    assert db.commits == 2  # batched: the first alone, the seven behind it together
    db.gated = False
    assert committer.apply(INFO, [work(events[0], record)]) == [False]  # a redelivery
    assert len(db.rows) == 8 and db.commits == 3


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
    """Whoever commits hands over to the oldest waiter instead of serving everyone: the
    first caller has returned while the second commit (of those queued behind it) is still
    in progress."""
    db = FakeDatabases(gated=True)
    committer = GroupCommitter(db)
    first = event(0)
    results: dict = {}
    threads = in_threads(committer, [(first, record)], results)
    db.commit_started()
    rest = in_threads(committer, [(event(i), record) for i in range(1, 6)], results)
    eventually(lambda: queued(committer) == 5, timeout=10)
    db.finish.release()  # the first commit ends ...
    db.commit_started()  # ... and the next one, of the five, has begun: it is held there
    threads[0].join(10)
    assert not threads[0].is_alive(), "the first caller is committing the others' batch"
    assert results == {first.id: True}
    db.finish.release()
    joined(threads + rest)
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
