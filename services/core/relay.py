"""The outbox relay of a writing process: publishes committed events in the background.

A unit of work hands its events over right after its commit and returns; relay threads
publish them in batches (with publisher confirms), and a marker thread marks their rows
sent, one UPDATE per database for whatever was confirmed in the last MARK_SECONDS. Batches
and marks are gathered for a moment because each costs a broker confirm or a database
round trip of its own: at a few hundred events/s, one per event was most of a writing
request's CPU. If the broker is unreachable the database is remembered and swept every
second until it succeeds; a crash before any of this is covered by the worker's periodic
sweep. Either way an event may be sent twice, never lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace

from ontrackio.core import outbox, telemetry
from ontrackio.core.bus import Publisher
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.events import Event

log = logging.getLogger(__name__)
MAX_BATCH = 200
# How long after its commit a unit's events may wait for others to share their batch.
GATHER_SECONDS = 0.02
# How long confirmed events wait to be marked sent with others of their database: far below
# the sweeps' minimum age (5 s), so the delay does not make them be sent twice.
MARK_SECONDS = 0.05


@dataclass(frozen=True)
class _Item:
    key: str
    label: str
    conninfo: Callable[[], str]
    events: list[Event]
    done: threading.Event
    submitted: float
    urgent: bool = False


class Relay:
    def __init__(self, publishers: list[Publisher], pools: PoolManager):
        self._publishers = publishers
        self._pools = pools
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._unsent: dict[str, tuple[str, Callable[[], str]]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._gathering = threading.Lock()  # one relay thread gathers while others publish
        self._urgent = threading.Event()  # a unit waits for its publish: end the gather now
        # Confirmed, not yet marked sent: database key -> (conninfo, event ids).
        self._confirmed: dict[str, tuple[Callable[[], str], list[str]]] = {}
        self._marking = 0  # events taken by a mark in progress
        self._to_mark = threading.Condition(self._lock)

    @property
    def pending(self) -> int:
        """Units of work whose events are waiting to be published."""
        return self._pending

    @property
    def unsent(self) -> int:
        """Outboxes being retried because their publish failed."""
        return len(self._unsent)

    def submit(
        self,
        key: str,
        label: str,
        conninfo: Callable[[], str],
        events: list[Event],
        urgent: bool = False,
    ) -> threading.Event:
        """Publish `events` (whose rows in database `key` just committed) soon; the returned
        event is set once the broker has confirmed them (or the attempt failed). `urgent`:
        the caller waits for that, so the batch being gathered goes out at once."""
        done = threading.Event()
        with self._lock:
            if not self._threads:
                self._start()
            self._pending += 1
        self._queue.put(_Item(key, label, conninfo, events, done, time.monotonic(), urgent))
        if urgent:
            self._urgent.set()
        return done

    def _start(self) -> None:
        for i, publisher in enumerate(self._publishers):
            t = threading.Thread(
                target=self._run, args=(publisher,), daemon=True, name=f"outbox-relay-{i}"
            )
            t.start()
            self._threads.append(t)
        for target, name in ((self._retry_loop, "outbox-retry"), (self._mark_loop, "outbox-mark")):
            t = threading.Thread(target=target, daemon=True, name=name)
            t.start()
            self._threads.append(t)

    def _gather(self) -> list[_Item]:
        """The next batch: the first unit waiting, and those submitted up to GATHER_SECONDS
        after it (none is held longer than that after its commit)."""
        batch = [self._queue.get()]
        wait = batch[0].submitted + GATHER_SECONDS - time.monotonic()
        if wait > 0 and not batch[0].urgent:
            self._urgent.wait(wait)  # cut short by an urgent unit
        self._urgent.clear()  # any urgent unit submitted so far goes in this batch
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self, publisher: Publisher) -> None:
        while True:
            with self._gathering:
                batch = self._gather()
            try:
                self._publish(publisher, batch)
            except Exception:  # noqa: BLE001 - never let the relay thread die
                log.exception("outbox relay failed")
            finally:
                for item in batch:
                    item.done.set()
                with self._lock:
                    self._pending -= len(batch)
                    self._idle.notify_all()

    def _publish(self, publisher: Publisher, batch: list[_Item]) -> None:
        events = [e for item in batch for e in item.events]
        # One span per event, in the trace of the request that emitted it.
        tracer = telemetry.tracer()
        spans = [
            tracer.start_span(
                "outbox publish",
                context=telemetry.extract(e.trace),
                kind=trace.SpanKind.PRODUCER,
                attributes={"ontrack.event_id": e.id},
            )
            for e in events
        ]
        try:
            publisher.publish(events)
        except Exception as exc:  # noqa: BLE001 - any broker failure: retry by sweeping
            log.warning(
                "publish failed (%s); retrying %d outbox(es) every second",
                type(exc).__name__,
                len({i.key for i in batch}),
            )
            with self._lock:
                for item in batch:
                    self._unsent[item.key] = (item.label, item.conninfo)
            return
        finally:
            for span in spans:
                span.end()
        with self._lock:
            for item in batch:
                conninfo, ids = self._confirmed.setdefault(item.key, (item.conninfo, []))
                ids.extend(e.id for e in item.events)
            self._to_mark.notify()

    def _mark_loop(self) -> None:
        while True:
            with self._lock:
                while not self._confirmed:
                    self._to_mark.wait()
            time.sleep(MARK_SECONDS)
            self.mark_confirmed()

    def mark_confirmed(self) -> None:
        """Mark the confirmed events sent: one statement per database."""
        with self._lock:
            todo, self._confirmed = self._confirmed, {}
            self._marking += sum(len(ids) for _, ids in todo.values())
        try:
            for key, (conninfo, ids) in todo.items():
                try:
                    with self._pools.connection(key, conninfo) as conn:
                        outbox.mark_sent_alone(conn, ids)
                except Exception as exc:  # noqa: BLE001 - the sweep will send them again
                    log.warning(
                        "marking events sent failed (%s); they may be sent twice",
                        type(exc).__name__,
                    )
        finally:
            with self._lock:
                self._marking -= sum(len(ids) for _, ids in todo.values())
                self._idle.notify_all()

    def _retry_loop(self) -> None:
        while True:
            time.sleep(1.0)
            self.retry_unsent()

    def retry_unsent(self) -> int:
        """Sweep the outboxes whose publish failed; returns the events sent."""
        with self._lock:
            todo = dict(self._unsent)
        sent = 0
        for key, (label, conninfo) in todo.items():
            try:
                with self._pools.connection(key, conninfo) as conn:
                    sent += outbox.sweep(conn, self._publishers[0], min_age=0)
                with self._lock:
                    self._unsent.pop(key, None)
            except Exception as exc:  # noqa: BLE001 - broker or database still down
                log.info("outbox retry for %s failed: %s", label or key, type(exc).__name__)
        return sent

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted has been published and marked sent; False on
        timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            if not self._idle.wait_for(lambda: not self._pending, timeout):
                return False
        self.mark_confirmed()  # now, rather than after MARK_SECONDS
        with self._idle:
            return self._idle.wait_for(
                lambda: not (self._confirmed or self._marking),
                max(0.0, deadline - time.monotonic()),
            )

    def close(self) -> None:
        self.flush()
        for p in self._publishers:
            p.close()
