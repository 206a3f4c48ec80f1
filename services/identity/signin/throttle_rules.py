"""Brute-force throttling: when failed password sign-ins lock an account or an address.
Pure: no I/O (throttle.py keeps the counters in the tenant database).

Two counters, each a ``Counter`` row: one per account (the tenant policy's
``lockout_threshold`` failures in a row lock it for ``lockout_seconds``), one per client
address (``ONTRACK_SIGNIN_ADDRESS_FAILURES`` failures within
``ONTRACK_SIGNIN_ADDRESS_WINDOW_SECONDS`` block that address for the same window, so one
address cannot spray guesses over many accounts). A success clears the account's counter,
not the address's. Failures older than the window start the count afresh. IPv6 addresses
are counted by their /64 (one subscriber usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ontrackio.core import addresses

IPV6_PREFIX = 64


@dataclass(frozen=True)
class Counter:
    failures: int = 0
    window_started_at: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Policy:
    """``threshold`` failures within ``window_seconds`` lock for ``lockout_seconds``."""

    threshold: int
    lockout_seconds: int
    window_seconds: int

    def locked(self, c: Counter, now: datetime) -> bool:
        return c.locked_until is not None and now < c.locked_until

    def after_failure(self, c: Counter, now: datetime) -> Counter:
        """The counter once one more failure happened at ``now``: a new window if the last
        one is over (or a lockout ended), locked when the count reaches the threshold."""
        window_over = c.window_started_at is None or now >= c.window_started_at + timedelta(
            seconds=self.window_seconds
        )
        lockout_over = c.locked_until is not None and now >= c.locked_until
        if window_over or lockout_over:
            c = Counter(0, now, None)
        failures = c.failures + 1
        if failures >= self.threshold and not self.locked(c, now):
            return replace(
                c, failures=failures, locked_until=now + timedelta(seconds=self.lockout_seconds)
            )
        return replace(c, failures=failures)


def account_policy(lockout_threshold: int, lockout_seconds: int) -> Policy:
    """An account locks after ``lockout_threshold`` failures in a row; a failure counts while
    the lockout would still be running from it (so slow guessing adds up too)."""
    return Policy(lockout_threshold, lockout_seconds, window_seconds=max(lockout_seconds, 3600))


def address_key(address: str) -> str:
    """The key an address is counted under: the normalised IPv4 address, the /64 of an
    IPv6 address, or ``unknown`` for what does not parse (all such callers share one)."""
    ip = addresses.parse_address(address)
    if ip is None:
        return "unknown"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)
