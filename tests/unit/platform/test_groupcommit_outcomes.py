"""Group commit's outcomes at the edges (fake unit of work, no database, no timing): nothing
to apply, a lone failing event, a failing event among others retried alone, the trace causes
an effect sees (and that they do not outlive it), and a batch that fails before any effect.
Written to kill mutants that survived the mutation check (docs/testing.md)."""

from __future__ import annotations

from contextlib import contextmanager

from opentelemetry import context as otel_context

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core.directory import TenantInfo
from ontrackio.core.groupcommit import GroupCommitter, Work
from ontrackio.identity.v1 import events_pb2

INFO = TenantInfo("acme", "active", "main", "business")


class Unit:
    def __init__(self, db):
        self.db, self.rows, self.inbox, self.causes = db, [], set(), {}

    def first_deliveries(self, events):
        if self.db.inbox_fails:
            raise ConnectionError("inbox statement failed")
        fresh = {e.id for e in events} - self.db.inbox
        self.inbox |= fresh
        return set(fresh)


class Databases:
    """Keeps a unit's inbox rows and effects only when its block ends without an error."""

    def __init__(self):
        self.inbox: set[str] = set()
        self.rows: list[str] = []
        self.transactions = 0
        self.inbox_fails = False
        self.units: list[Unit] = []

    @contextmanager
    def unit_of_work(self, info):
        assert info is INFO
        u = Unit(self)
        self.units.append(u)
        self.transactions += 1
        yield u
        self.inbox |= u.inbox
        self.rows += u.rows


def event(n: int):
    return DEPLOYMENT.events.new(
        "identity.user_deactivated", "acme", events_pb2.UserDeactivated(user_id=str(n))
    )


def work(ev, effect, context=None) -> Work:
    return Work(ev, ev.message(), effect, context or otel_context.get_current())


def record(u, payloads):
    u.rows += [m.user_id for m in payloads]


def poison(u, payloads):
    raise ValueError("bad event")


def test_nothing_to_apply_opens_no_transaction():
    db = Databases()
    assert GroupCommitter(db).apply(INFO, []) == []
    assert db.transactions == 0


def test_a_lone_failing_event_fails_in_its_one_transaction():
    db = Databases()
    (outcome,) = GroupCommitter(db).apply(INFO, [work(event(1), poison)])
    assert isinstance(outcome, ValueError)
    assert db.transactions == 1 and db.inbox == set()  # rolled back: it can be retried


def test_after_a_failing_batch_the_others_are_applied_alone_and_only_once():
    db = Databases()
    good, bad, other = event(1), event(2), event(3)
    committer = GroupCommitter(db)
    outcomes = committer.apply(INFO, [work(good, record), work(bad, poison), work(other, record)])
    assert outcomes[0] is True and isinstance(outcomes[1], ValueError) and outcomes[2] is True
    assert db.rows == ["1", "3"] and db.inbox == {good.id, other.id}
    assert db.transactions == 4  # the batch, then one each
    assert committer.apply(INFO, [work(good, record)]) == [False]  # applied before


def test_when_the_inbox_statement_fails_every_event_gets_the_error_and_no_effect():
    db = Databases()
    db.inbox_fails = True
    outcomes = GroupCommitter(db).apply(INFO, [work(event(1), record), work(event(2), record)])
    assert [type(o) for o in outcomes] == [ConnectionError, ConnectionError]
    assert db.rows == []


def test_an_effect_sees_the_causes_of_its_run_and_they_are_cleared_after_it():
    db = Databases()
    first, second = event(1), event(2)
    contexts = [otel_context.set_value("n", 1), otel_context.set_value("n", 2)]
    seen = []

    def look(u, payloads):
        seen.append(sorted(ctx.get("n") for ctx in u.causes.values()))
        assert set(u.causes) == {id(m) for m in payloads}

    items = [work(first, look, contexts[0]), work(second, look, contexts[1])]
    assert GroupCommitter(db).apply(INFO, items) == [True, True]
    assert seen == [[1, 2]]
    assert db.units[-1].causes == {}


def test_causes_are_cleared_when_the_effect_raises():
    db = Databases()
    GroupCommitter(db).apply(INFO, [work(event(1), poison)])
    assert db.units[-1].causes == {}
