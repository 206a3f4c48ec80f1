"""The outbox sweep's plan without a database: which tenant databases a periodic sweep
visits."""

from __future__ import annotations

from ontrackio.core.outbox import SweepPlan


def test_the_sweep_plan_skips_only_databases_unchanged_since_a_clean_sweep():
    plan, key = SweepPlan(), ("main", "acme")
    assert plan.due(key, 10)  # never swept
    plan.swept(key, 10, unsent=0)
    assert not plan.due(key, 10)  # nothing inserted since a sweep that left it empty
    assert plan.due(key, 11)  # something was inserted
    plan.swept(key, 11, unsent=2)  # rows too young to send, or written meanwhile
    assert plan.due(key, 11)  # so it is visited again even though the counter is the same
    plan.swept(key, 11, unsent=0)
    assert plan.due(key, None)  # no statistics: always visited
    assert plan.due(key, 5)  # statistics reset: a changed counter, visited
    plan.swept(key, 5, unsent=0)
    plan.swept(("other", "acme"), 3, unsent=0)
    plan.keep_only({key}, unreachable={"other"})  # an unreachable cluster keeps its record
    assert not plan.due(("other", "acme"), 3)
    plan.keep_only(set(), unreachable=set())  # the databases are gone
    assert plan.due(key, 5) and plan.due(("other", "acme"), 3)
