"""The brute-force policy as a pure object (identity/signin/throttle_rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ontrackio.identity.signin.throttle_rules import Counter, Policy, account_policy, address_key
from tests.unit.gateway.strategies import PROPERTY

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _fail(policy: Policy, times: int, start=T0, step=timedelta(seconds=1)) -> Counter:
    c = Counter()
    for n in range(times):
        c = policy.after_failure(c, start + n * step)
    return c


def test_the_threshold_th_failure_locks_for_the_lockout_time():
    p = account_policy(10, 900)
    nine = _fail(p, 9)
    assert not p.locked(nine, T0 + timedelta(seconds=9))
    ten = p.after_failure(nine, T0 + timedelta(seconds=9))
    assert ten.failures == 10
    assert ten.locked_until == T0 + timedelta(seconds=9 + 900)
    assert p.locked(ten, T0 + timedelta(seconds=908))
    assert not p.locked(ten, T0 + timedelta(seconds=909))  # unlocked by time


def test_failures_while_locked_do_not_extend_the_lockout():
    p = account_policy(3, 60)
    c = _fail(p, 3)
    later = p.after_failure(c, T0 + timedelta(seconds=30))
    assert later.locked_until == c.locked_until


def test_after_a_lockout_ends_the_count_starts_afresh():
    p = account_policy(3, 60)
    c = _fail(p, 3)
    after = p.after_failure(c, c.locked_until)
    assert after.failures == 1 and after.locked_until is None


def test_failures_older_than_the_window_are_forgotten():
    p = Policy(threshold=3, lockout_seconds=60, window_seconds=100)
    c = _fail(p, 2)
    assert p.after_failure(c, T0 + timedelta(seconds=99)).locked_until is not None
    assert p.after_failure(c, T0 + timedelta(seconds=100)).failures == 1


def test_an_account_window_is_at_least_an_hour_so_slow_guessing_adds_up():
    p = account_policy(5, 60)
    c = _fail(p, 5, step=timedelta(minutes=10))
    assert c.locked_until is not None


def test_addresses_are_counted_by_ipv4_address_and_ipv6_slash_64():
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("") == address_key("not an address") == "unknown"


@PROPERTY
@given(
    st.integers(1, 20),
    st.integers(1, 3600),
    st.lists(st.integers(0, 400), max_size=60),
)
def test_never_more_than_threshold_failures_pass_within_a_window_unlocked(threshold, lock, gaps):
    """Whatever the timing, no window holds `threshold` failures without a lockout."""
    p = Policy(threshold, lock, window_seconds=3600)
    c, now = Counter(), T0
    unlocked_in_window: list[datetime] = []
    for gap in gaps:
        now += timedelta(seconds=gap)
        if p.locked(c, now):
            c = p.after_failure(c, now)
            continue
        c = p.after_failure(c, now)
        unlocked_in_window = [t for t in unlocked_in_window if now - t < timedelta(hours=1)]
        unlocked_in_window.append(now)
        if len(unlocked_in_window) >= threshold and c.window_started_at <= unlocked_in_window[0]:
            assert p.locked(c, now)
