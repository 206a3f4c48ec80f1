"""`tests.helpers.eventually` and `eventually_passes`, the suite's way of waiting: the first
good result is returned, the last failure is what a timeout reports, the timeout is kept,
and an interruption is never retried. Time is a fake clock here (the helper's `time`), so
no test waits and none depends on the machine's speed."""

from __future__ import annotations

import pytest

from tests import helpers
from tests.helpers import eventually, eventually_passes


class FakeTime:
    """`time.monotonic` and `time.sleep` for the helper: sleeping advances the clock."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(helpers, "time", fake)
    return fake


def answers(*results):
    """A check returning (or raising) `results` in turn, recording when it was called."""
    calls: list[float] = []
    pending = list(results)

    def check():
        calls.append(helpers.time.monotonic())
        result = pending.pop(0) if len(pending) > 1 else pending[0]
        if isinstance(result, BaseException):
            raise result
        return result

    check.calls = calls
    return check


def test_returns_the_first_truthy_value_without_calling_again(clock):
    check = answers(0, "", None, [], "first", "second")
    assert eventually(check, timeout=10, interval=0.5) == "first"
    assert len(check.calls) == 5
    assert clock.sleeps == [0.5] * 4


def test_exceptions_mean_not_yet(clock):
    check = answers(AssertionError("a"), ConnectionError("b"), {"ok": 1})
    assert eventually(check, timeout=10) == {"ok": 1}
    assert len(check.calls) == 3


def test_at_timeout_the_last_assertion_is_re_raised_with_a_note(clock):
    failures = [AssertionError(f"attempt {i}") for i in range(1000)]
    check = answers(*failures)
    with pytest.raises(AssertionError) as info:
        eventually(check, timeout=1.0, interval=0.1)
    tried = len(check.calls)
    assert info.value is failures[tried - 1]  # the last failure, not the first
    assert str(info.value) == f"attempt {tried - 1}"
    assert info.value.__notes__ == [f"eventually: still failing after 1.0 s ({tried} attempts)"]


def test_at_timeout_a_falsy_result_is_named(clock):
    with pytest.raises(AssertionError, match=r"after 2 s \(\d+ attempts\).*last result was \[\]"):
        eventually(answers(0, []), timeout=2)


def test_the_timeout_is_honoured_with_a_last_check_at_the_deadline(clock):
    start = clock.now
    check = answers(False)
    with pytest.raises(AssertionError):
        eventually(check, timeout=1.0, interval=0.3)
    assert check.calls[0] == start  # at once, not after a first sleep
    assert check.calls[-1] == start + 1.0  # the deadline itself, not an interval later
    assert clock.now == start + 1.0
    assert clock.sleeps == pytest.approx([0.3, 0.3, 0.3, 0.1])


def test_a_condition_met_at_the_deadline_counts(clock):
    start = clock.now
    check = answers(False, False, "late")
    assert eventually(check, timeout=1.0, interval=0.5) == "late"
    assert check.calls[-1] == start + 1.0


def test_the_real_clock_is_kept_too():
    """Without the fake: a check that is never true ends in an AssertionError, after the
    timeout (and not before it)."""
    import time

    start = time.monotonic()
    with pytest.raises(AssertionError):
        eventually(lambda: False, timeout=0.2, interval=0.05)
    assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), SystemExit(3)])
def test_an_interruption_is_never_retried(clock, interruption):
    check = answers(interruption, "too late")
    with pytest.raises(type(interruption)):
        eventually(check, timeout=10)
    assert len(check.calls) == 1 and clock.sleeps == []


def test_pytest_fail_inside_a_check_is_not_retried(clock):
    def check():
        pytest.fail("the check gave up itself")

    with pytest.raises(pytest.fail.Exception, match="gave up itself"):
        eventually(check, timeout=10)
    assert clock.sleeps == []


def test_eventually_passes_takes_an_asserting_function_that_returns_nothing(clock):
    seen = []

    def converged() -> None:
        seen.append(1)
        assert len(seen) >= 3, f"only {len(seen)} so far"

    assert eventually_passes(converged, timeout=10) is None
    assert len(seen) == 3


def test_eventually_passes_reports_the_last_assertion(clock):
    def never() -> None:
        raise AssertionError("still 2 of 3 replicas")

    with pytest.raises(AssertionError, match="still 2 of 3 replicas") as info:
        eventually_passes(never, timeout=0.5)
    assert info.value.__notes__[0].startswith("eventually: still failing after 0.5 s")


def test_eventually_treats_none_as_not_yet(clock):
    """The difference between the two: a check returning None (such as a search that
    found nothing) keeps `eventually` waiting."""
    check = answers(None, None, "found")
    assert eventually(check, timeout=10) == "found"
    assert len(check.calls) == 3
