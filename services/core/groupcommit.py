"""Group commit for event consumers: a tenant's events share a transaction.

A batch handler hands a tenant's events (each with its effect) to the tenant's committer
and waits. The committer applies everything queued so far in one transaction and commits
once, so the commit (and its WAL flush) is paid per batch rather than per event, and a
tenant needs one connection however many of its events are in flight. One statement
records every event of the batch in the inbox and returns the new ones; only those get
their effect, and an effect takes all its new events at once (consecutive events of one
handler, in delivery order), so a batch costs a few statements however many events it
holds. (psycopg's pipeline mode was measured too: under eventlet it cost more CPU per
event than plain round trips at every batch size up to 20.) If the batch fails, each event
is applied again in a transaction of its own, so one bad event fails only itself (its
handler then retries or parks it, as before).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message
from opentelemetry import context as otel_context

from ontrackio.core.db.tenantdb import TenantDatabases, UnitOfWork
from ontrackio.core.directory import TenantInfo
from ontrackio.core.events import Event

MAX_BATCH = 200

# An effect applies the payloads of events not applied before, in delivery order.
Effect = Callable[[UnitOfWork, list[Message]], None]


@dataclass
class Work:
    """One event to apply once: its parsed payload, its effect and its trace context
    (events the effect emits continue that trace: see UnitOfWork.emit's `cause`)."""

    event: Event
    message: Message
    effect: Effect
    context: otel_context.Context
    wake: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    applied: bool = False
    error: BaseException | None = None


class GroupCommitter:
    """Applies events once each (inbox), batching per tenant; green- and thread-safe.

    One caller at a time commits for a tenant; it commits one batch (its own events and
    whatever queued before them), then hands the role to the oldest caller still waiting,
    so no caller works for others for long and its own messages are acknowledged promptly.
    """

    def __init__(self, dbs: TenantDatabases):
        self._dbs = dbs
        self._lock = threading.Lock()
        self._queues: dict[str, list[Work]] = {}
        self._busy: set[str] = set()

    def apply(self, info: TenantInfo, work: list[Work]) -> list[bool | BaseException]:
        """Apply each work item unless its event was applied before; returns, per item,
        whether it was applied now, or the exception applying it raised."""
        if not work:
            return []
        with self._lock:
            self._queues.setdefault(info.slug, []).extend(work)
            lead = info.slug not in self._busy
            self._busy.add(info.slug)
        for item in work:  # the oldest unfinished item is the one a hand-over wakes
            while True:
                if lead:
                    self._commit_next_batch(info)
                    lead = False
                item.wake.wait()
                if item.finished:
                    break
                item.wake.clear()  # promoted: commit the next batch
                lead = True
        return [item.error if item.error is not None else item.applied for item in work]

    def _commit_next_batch(self, info: TenantInfo) -> None:
        with self._lock:
            queue = self._queues[info.slug]
            batch = queue[:MAX_BATCH]
            del queue[: len(batch)]
        try:
            self._commit(info, batch)
        finally:
            for item in batch:
                item.finished = True
                item.wake.set()
            with self._lock:
                queue = self._queues[info.slug]
                if queue:
                    queue[0].wake.set()  # the oldest waiter commits next
                else:
                    del self._queues[info.slug]
                    self._busy.discard(info.slug)

    def _commit(self, info: TenantInfo, batch: list[Work]) -> None:
        try:
            self._apply_in_one_transaction(info, batch)
        except Exception as exc:  # noqa: BLE001 - find the culprit: each on its own
            if len(batch) == 1:
                batch[0].applied, batch[0].error = False, exc
                return
            for item in batch:
                try:
                    self._apply_in_one_transaction(info, [item])
                except Exception as exc:  # noqa: BLE001 - handed to its caller
                    item.applied, item.error = False, exc

    def _apply_in_one_transaction(self, info: TenantInfo, batch: list[Work]) -> None:
        with self._dbs.unit_of_work(info) as u:
            fresh = u.first_deliveries([item.event for item in batch])
            for item in batch:
                # A redelivered copy in the same batch finds its id already taken.
                item.applied = item.event.id in fresh
                fresh.discard(item.event.id)
            for run in _runs([item for item in batch if item.applied]):
                _apply_run(u, run)


def _runs(items: list[Work]) -> list[list[Work]]:
    """Consecutive items with the same effect, in order (so an event is never applied
    before an earlier one of another type, such as a leaver before its joiner)."""
    runs: list[list[Work]] = []
    for item in items:
        if runs and _function(runs[-1][0].effect) is _function(item.effect):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _function(effect: Effect):
    """What an effect runs: the same handler method bound to another service instance
    (nameko makes one per worker, so concurrent groups carry different partials) is the
    same effect."""
    return getattr(effect, "func", effect)


def _apply_run(u: UnitOfWork, run: list[Work]) -> None:
    """One effect call for a run; events it emits continue the trace of their cause
    (UnitOfWork.emit)."""
    u.causes = {id(item.message): item.context for item in run}
    try:
        run[0].effect(u, [item.message for item in run])
    finally:
        u.causes = {}
