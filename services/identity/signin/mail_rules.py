"""When the mail outbox tries a message again, gives up on it, and which tenant databases the
worker visits. Pure: no I/O (mail.py keeps the rows, smtp.py talks to the server).

A temporary failure (the server unreachable, a 4xx reply, a timeout) is tried again after
``base × 2^(attempt-1)`` seconds, at most ``max_seconds``; after ``max_attempts`` attempts,
or at once for a permanent refusal (a 5xx reply: no such mailbox, relaying denied), the
message is ``dead``: kept for the admin to see (its invitation shows ``mail_state`` dead),
never tried again. Re-inviting writes a new message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

PENDING = "pending"
SENT = "sent"
DEAD = "dead"
STATES = (PENDING, SENT, DEAD)


@dataclass(frozen=True)
class RetryPlan:
    base_seconds: float
    max_seconds: float
    max_attempts: int

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1-based)."""
        exponent = min(max(attempts, 1) - 1, 30)
        return timedelta(seconds=min(self.base_seconds * 2**exponent, self.max_seconds))

    def after_failure(
        self, attempts: int, now: datetime, *, permanent: bool
    ) -> tuple[str, datetime | None]:
        """(state, next attempt) after the ``attempts``-th attempt failed."""
        if permanent or attempts >= self.max_attempts:
            return DEAD, None
        return PENDING, now + self.delay(attempts)


class VisitPlan:
    """Which tenant databases may hold mail due now; keys are (placement, slug).

    A database is visited when its insert counter moved since a visit (a new message may be
    there: new messages also wake the worker at once through ``identity.mail_queued``, this
    is the fallback), when the earliest pending message it reported is due, or when its
    state is unknown (a new worker visits every database once)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[int | None, datetime | None]] = {}

    def due(self, key: tuple[str, str], inserts: int | None, now: datetime) -> bool:
        if key not in self._seen or inserts is None:
            return True
        seen_inserts, next_due = self._seen[key]
        return seen_inserts != inserts or (next_due is not None and next_due <= now)

    def visited(self, key: tuple[str, str], inserts: int | None, next_due: datetime | None) -> None:
        """Record a visit: ``inserts`` as read before it, the earliest pending message's
        next attempt after it (None: nothing pending)."""
        self._seen[key] = (inserts, next_due)

    def forget(self, key: tuple[str, str]) -> None:
        self._seen.pop(key, None)
