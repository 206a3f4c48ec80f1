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
    done: threading.Event = field(default_factory=threading.Event)
    applied: bool = False
    error: BaseException | None = None


class GroupCommitter:
    """Applies events once each (inbox), batching per tenant; green- and thread-safe."""

    def __init__(self, dbs: TenantDatabases):
        self._dbs = dbs
        self._lock = threading.Lock()
        self._queues: dict[str, list[_Item]] = {}

    def apply(self, info: TenantInfo, event: Event, effect) -> bool:
        """Apply `effect(uow, payload)` unless the event was applied before; returns whether
        it was applied now. Raises what applying it raised."""
        item = _Item(event, effect, otel_context.get_current())
        with self._lock:
            queue = self._queues.get(info.slug)
            lead = queue is None
            if lead:
                queue = self._queues[info.slug] = []
            queue.append(item)
        if lead:  # this handler commits for everyone queued behind it
            self._drain(info)
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.applied

    def _drain(self, info: TenantInfo) -> None:
        while True:
            with self._lock:
                batch = self._queues[info.slug][:MAX_BATCH]
                del self._queues[info.slug][: len(batch)]
                if not batch:
                    del self._queues[info.slug]
                    return
            self._commit(info, batch)

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
        finally:
            for item in batch:
                item.done.set()

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
