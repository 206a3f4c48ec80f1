"""The sweep plan forgets a clean record as soon as a sweep leaves rows behind, even when the
insert counter has not moved (rows written before the counter was read, still too young to
send): otherwise the database would be skipped with those rows unsent until the next insert.
Written to kill mutants that survived the mutation check (docs/testing.md)."""

from __future__ import annotations

from ontrackio.core.outbox import SweepPlan


def test_a_sweep_that_leaves_rows_unsent_makes_the_same_counter_due_again():
    plan, key = SweepPlan(), ("main", "acme")
    plan.swept(key, 10, unsent=0)
    assert not plan.due(key, 10)
    plan.swept(key, 10, unsent=3)  # same counter, but rows are left: the record must go
    assert plan.due(key, 10)


def test_an_unknown_counter_forgets_the_record_too():
    plan, key = SweepPlan(), ("main", "acme")
    plan.swept(key, 10, unsent=0)
    plan.swept(key, None, unsent=0)  # statistics unavailable this time
    assert plan.due(key, 10)


def test_recording_an_unclean_visit_of_a_database_never_seen_is_harmless():
    plan, key = SweepPlan(), ("main", "acme")
    plan.swept(key, 7, unsent=1)  # nothing to forget: no error
    plan.swept(key, None, unsent=0)
    assert plan.due(key, 7)
