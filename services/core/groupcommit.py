"""Group commit for event consumers: concurrent handlers of one tenant share a transaction.

Each handler hands its event and effect to the tenant's committer and waits. The committer
applies everything queued so far in one transaction — inbox row and effect per event — and
commits once, so the commit (and its WAL flush) is paid per batch rather than per event,
and a tenant needs one connection however many of its events are in flight. If the batch
fails, each event is applied again in a transaction of its own, so one bad event fails only
its own handler (which then retries or parks it, as before).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry import context as otel_context

from ontrackio.core.db.tenantdb import TenantDatabases, UnitOfWork
from ontrackio.core.directory import TenantInfo
from ontrackio.core.events import Event

MAX_BATCH = 100


@dataclass
class _Item:
    event: Event
    effect: Callable[[UnitOfWork, object], None]
    context: otel_context.Context
    wake: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    applied: bool = False
    error: BaseException | None = None


class GroupCommitter:
    """Applies events once each (inbox), batching per tenant; green- and thread-safe.

    One handler at a time commits for a tenant; it commits one batch (its own event and
    whatever queued before it), then hands the role to the oldest handler still waiting,
    so no handler works for others for long and its own message is acknowledged promptly.
    """

    def __init__(self, dbs: TenantDatabases):
        self._dbs = dbs
        self._lock = threading.Lock()
        self._queues: dict[str, list[_Item]] = {}
        self._busy: set[str] = set()

    def apply(self, info: TenantInfo, event: Event, effect) -> bool:
        """Apply `effect(uow, payload)` unless the event was applied before; returns whether
        it was applied now. Raises what applying it raised."""
        item = _Item(event, effect, otel_context.get_current())
        with self._lock:
            self._queues.setdefault(info.slug, []).append(item)
            lead = info.slug not in self._busy
            self._busy.add(info.slug)
        while True:
            if lead:
                self._commit_next_batch(info)
            item.wake.wait()
            if item.finished:
                break
            item.wake.clear()  # promoted: commit the next batch
            lead = True
        if item.error is not None:
            raise item.error
        return item.applied

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

    def _commit(self, info: TenantInfo, batch: list[_Item]) -> None:
        try:
            with self._dbs.unit_of_work(info) as u:
                for item in batch:
                    item.applied = self._apply_one(u, item)
        except Exception as exc:  # noqa: BLE001 - find the culprit: each on its own
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for item in batch:
                    try:
                        with self._dbs.unit_of_work(info) as u:
                            item.applied = self._apply_one(u, item)
                    except Exception as exc:  # noqa: BLE001 - handed to its handler
                        item.error = exc

    @staticmethod
    def _apply_one(u: UnitOfWork, item: _Item) -> bool:
        token = otel_context.attach(item.context)  # events it emits join its trace
        try:
            if not u.first_delivery(item.event):
                return False
            item.effect(u, item.event.message())
            return True
        finally:
            otel_context.detach(token)
