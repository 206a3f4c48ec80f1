"""The worker process: a nameko service that consumes events, relays the outbox and runs
timers. Import `ontrackio.core.greening` first in the process's entry module.

`@on` marks an event handler: the envelope is validated, the sender's trace continued,
and a failure retried with backoff, then parked in the dead-letter queue; `@applies` marks
an effect on the tenant's database. Which events a handler receives is the service's
contract's to say: `run_worker` binds the marked methods to their queues (core/binding.py).
Every domain worker inherits the tenant-lifecycle handlers of `ServiceWorker`. The state a
worker process shares among its nameko workers lives on its `WorkerProcess`.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import eventlet
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.runners import ServiceRunner
from nameko.timer import timer
from opentelemetry import trace

from ontrackio.core import deletion, metrics, outbox, telemetry
from ontrackio.core import events as ev
from ontrackio.core.binding import bind, handles
from ontrackio.core.consumer import (
    GATHER_CONFIG_KEY,
    PREFETCH_CONFIG_KEY,
    BatchEventHandler,
    Delivery,
    retry_or_park,
    settle,
)
from ontrackio.core.errors import EventRefused
from ontrackio.core.groupcommit import GroupCommitter, Work
from ontrackio.core.keys import reencrypt
from ontrackio.core.runtime import Runtime
from ontrackio.core.v1 import core_pb2
from ontrackio.core.vocabulary import LIVE_STATUSES

log = logging.getLogger(__name__)
# nameko config key under which run_worker hands every container its WorkerProcess.
PROCESS_CONFIG_KEY = "ONTRACK_WORKER_PROCESS"


class WorkerProcess:
    """What one worker process shares among its nameko workers (built by run_worker):
    its runtime, the bound on databases created or dropped at once, the group committer
    of its effects and the outbox sweep's plan."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.provisioning = threading.BoundedSemaphore(rt.settings.provision_concurrency)
        self.committer = GroupCommitter(rt.dbs)
        self.sweep_plan = outbox.SweepPlan()
        self.last_full_sweep = 0.0

    def failure(self, queue: str, envelope, headers, exc: BaseException) -> None:
        """Retry a failed event with backoff, or park it in the dead-letter queue."""
        retry_or_park(self.rt.publisher, self.rt.settings, queue, envelope, headers, exc)


def _process(extension) -> WorkerProcess:
    """The WorkerProcess of a nameko extension's container."""
    return extension.container.config[PROCESS_CONFIG_KEY]


class ReliableEventHandler(EventHandler):
    """An event handler that retries failures with backoff, then parks them in the DLQ.

    Its method receives a message body and returns (envelope, outcome) for each event the
    body carries (see `on`); each failed one is retried or parked alone."""

    def handle_result(self, message, worker_ctx, result=None, exc_info=None):
        if exc_info is not None:  # the handler failed as a whole: every event with it
            result = [(envelope, exc_info[1]) for envelope in ev.unpack(message.payload)]
        delivery = Delivery(message, len(result))
        failure = functools.partial(_process(self).failure, self.queue.name)
        for envelope, outcome in result:
            settle(self.queue_consumer, delivery, envelope, outcome, failure)
        return result, exc_info


class ReliableBatchHandler(BatchEventHandler):
    """A batch handler (core/consumer.py) whose failures go to its process's retry or DLQ."""

    def setup(self):
        self._failure = _process(self).failure
        super().setup()


def on(fn):
    """Handle events one at a time; the method receives a validated `Event`. The contract
    says which events (core/contract.py). For effects on the tenant's database use
    `applies`."""

    def one(self, body) -> bool | BaseException:
        rt = self.platform
        try:
            event = rt.events.from_wire(body)
        except ev.InvalidEvent as exc:
            return exc
        service = rt.service
        with trace.use_span(_consumer_span(event), end_on_exit=True) as span:
            _observe_lag(service, event)
            try:
                result = fn(self, event) is not False
            except Exception as exc:  # noqa: BLE001 - retried or parked by handle_result
                log.warning("%s failed on %s", fn.__qualname__, event.type, exc_info=True)
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR)
                result = exc
            _count(service, event.type, result)
            return result

    @functools.wraps(fn)
    def handler(self, body) -> list[tuple[object, bool | BaseException]]:
        return [(envelope, one(self, envelope)) for envelope in ev.unpack(body)]

    return handles(ReliableEventHandler.decorator)(handler)


def applies(effect):
    """Apply events to their tenant's database, once each (the contract says which).

    The method is the effect: `method(self, uow, payloads)` gets the parsed payloads of
    events not applied before, in delivery order, and applies them all (one statement,
    ideally) in the tenant's transaction that also records their inbox rows, so a
    redelivered event is skipped. Messages are consumed in batches (core/consumer.py) and a
    tenant's events share a transaction (core/groupcommit.py); if the effect fails, each
    event is applied again on its own, and a failing one is retried or parked alone. An
    effect that emits events names each one's `cause` (UnitOfWork.emit) to continue its
    trace.
    """

    @functools.wraps(effect)
    def handler(self, bodies: list) -> list[bool | BaseException]:
        return apply_batch(self.process, bodies, functools.partial(effect, self))

    return handles(ReliableBatchHandler.decorator)(handler)


def _consumer_span(event: ev.Event) -> trace.Span:
    """The span of consuming `event`, in the trace of the request that emitted it."""
    return telemetry.tracer("ontrackio.events").start_span(
        f"consume {event.type}",
        context=telemetry.extract(event.trace),
        kind=trace.SpanKind.CONSUMER,
        attributes={"ontrack.tenant": event.tenant, "ontrack.event_id": event.id},
    )


def _count(service: str, event_type: str, outcome: bool | BaseException) -> None:
    """One handled event by outcome: applied (True), duplicate (False) or failed."""
    label = (
        "failed" if isinstance(outcome, BaseException) else ("applied" if outcome else "duplicate")
    )
    metrics.EVENTS_HANDLED.labels(service, event_type, label).inc()


def _observe_lag(service: str, event: ev.Event) -> None:
    metrics.EVENT_LAG.labels(service, event.type).observe(
        max(0.0, (datetime.now(UTC) - event.occurred_at).total_seconds())
    )


def apply_batch(process: WorkerProcess, bodies: list, effect) -> list[bool | BaseException]:
    """Apply each message body's event with `effect` (see `applies`); one outcome per body:
    True (applied now), False (applied before) or the exception it raised."""
    rt = process.rt
    outcomes: list[bool | BaseException | None] = [None] * len(bodies)
    by_tenant: dict[str, list[tuple[int, Work]]] = {}
    spans = []
    for i, body in enumerate(bodies):
        try:
            event = rt.events.from_wire(body)
            message = event.message()
        except ev.InvalidEvent as exc:
            outcomes[i] = exc
            continue
        _observe_lag(rt.service, event)
        span = _consumer_span(event)
        spans.append((i, span))
        work = Work(event, message, effect, trace.set_span_in_context(span))
        by_tenant.setdefault(event.tenant, []).append((i, work))
    for tenant, items in by_tenant.items():
        try:
            info = rt.directory.require_live(tenant)
        except Exception as exc:  # noqa: BLE001 - each of its events fails with it
            results = [exc] * len(items)
        else:
            results = process.committer.apply(info, [w for _, w in items])
        for (i, _), result in zip(items, results, strict=True):
            outcomes[i] = result
    for i, span in spans:
        if isinstance(outcomes[i], BaseException):
            span.record_exception(outcomes[i])
            span.set_status(trace.StatusCode.ERROR)
        span.end()
    for body, outcome in zip(bodies, outcomes, strict=True):
        event_type = body.get("type") if isinstance(body, dict) else None
        known = isinstance(event_type, str) and event_type in rt.events  # a list is unhashable
        _count(rt.service, event_type if known else "unknown", outcome)
    return outcomes


class Platform(DependencyProvider):
    """Hands each worker the process's runtime."""

    def get_dependency(self, worker_ctx):
        return _process(self).rt


class Process(DependencyProvider):
    """Hands each worker the process's shared state."""

    def get_dependency(self, worker_ctx):
        return _process(self)


class ServiceWorker:
    """Tenant lifecycle and outbox relay, shared by every domain worker. The lifecycle
    handlers receive the tenant registry's events (core/contract.py)."""

    platform = Platform()
    process = Process()

    @on
    def handle_tenant_created(self, event: ev.Event) -> None:
        msg = event.message()
        rt = self.platform
        try:
            with self.process.provisioning:
                done = rt.provisioner.provision(msg.slug, msg.placement)
        except Exception as exc:
            failed = core_pb2.TenantProvisioningFailed(
                slug=msg.slug, service=rt.service, error=f"{type(exc).__name__}: {exc}"[:500]
            )
            try:
                rt.publisher.publish(
                    [rt.events.new(f"{rt.service}.tenant_provisioning_failed", msg.slug, failed)]
                )
            except Exception:  # noqa: BLE001 - the retry will report again
                log.warning("could not report the provisioning failure of %s", msg.slug)
            raise
        log.info(
            "tenant %s: %s ready (created=%s, applied=%s)",
            msg.slug,
            done.database,
            done.created,
            done.applied,
        )
        ready = core_pb2.TenantReady(
            slug=msg.slug, service=rt.service, schema_version=done.schema_version
        )
        # Provisioning is idempotent, so a lost "ready" is re-sent by the retried handler.
        rt.publisher.publish([rt.events.new(f"{rt.service}.tenant_ready", msg.slug, ready)])

    @on
    def handle_tenant_deleted(self, event: ev.Event) -> None:
        """Drop the tenant's databases, once the registry confirms the deletion (see
        core/deletion.py); a refused event is counted, logged and parked, nothing dropped."""
        msg = event.message()
        rt = self.platform
        reason = deletion.refusal(
            event.tenant, msg.slug, msg.placement, rt.directory.fresh(msg.slug), datetime.now(UTC)
        )
        if reason is not None:
            metrics.EVENTS_REFUSED.labels(rt.service, event.type).inc()
            log.error("refused %s %s: %s; nothing dropped", event.type, event.id, reason)
            raise EventRefused(reason)
        rt.directory.forget(msg.slug)
        rt.pools.drop(f"{msg.placement}/{rt.provisioner.names.tenant_database(msg.slug)}")
        with self.process.provisioning:
            rt.provisioner.drop(msg.slug, msg.placement)
        dropped = core_pb2.TenantDropped(slug=msg.slug, service=rt.service)
        rt.publisher.publish([rt.events.new(f"{rt.service}.tenant_dropped", msg.slug, dropped)])

    @on
    def handle_data_keys_rotated(self, event: ev.Event) -> None:
        """Re-encrypt the service's values under the tenant's new data key version
        (core/keys/reencrypt.py). Processes that cached the old keys may write under the
        old version for up to the data key cache time, so a second pass follows once that
        time has passed since the rotation. A crash redelivers the event; the job resumes."""
        msg = event.message()
        rt = self.platform
        rt.keys.forget(msg.slug)
        columns = rt.deployment.contract(rt.service).encrypted
        if not columns:
            return
        info = rt.directory.get(msg.slug)
        if info is None or info.status not in LIVE_STATUSES:
            return  # deleted meanwhile: nothing left to re-encrypt

        def run() -> int:
            return reencrypt.reencrypt(rt, info, columns, rt.settings.reencrypt_rows_per_second)

        done = run()
        since = (datetime.now(UTC) - event.occurred_at).total_seconds()
        if since < rt.settings.data_key_cache_seconds:
            time.sleep(rt.settings.data_key_cache_seconds - since)
        done += run()
        log.info("tenant %s: %d values re-encrypted under the new data key", msg.slug, done)

    @timer(interval=1)
    def relay_outbox(self) -> None:
        """Every sweep interval: publish what crashed writers left in any outbox."""
        rt, process = self.platform, self.process
        now = time.monotonic()
        if now - process.last_full_sweep < rt.settings.outbox_sweep_seconds:
            return
        process.last_full_sweep = now
        self.sweep_all(rt)

    def sweep_all(self, rt: Runtime) -> int:
        """Sweep the outbox of every tenant database that may hold unsent events (see
        outbox.SweepPlan); returns the events sent."""
        plan, sent = self.process.sweep_plan, 0
        present: set[tuple[str, str]] = set()
        unreachable: set[str] = set()
        visited = metrics.OUTBOX_SWEEP_DATABASES.labels(rt.service, "visited")
        skipped = metrics.OUTBOX_SWEEP_DATABASES.labels(rt.service, "skipped")
        for placement in rt.clusters.names:
            try:
                databases = rt.provisioner.tenant_database_inserts(placement)
            except Exception as exc:  # noqa: BLE001 - one cluster down: sweep the others
                log.warning(
                    "outbox sweep: cluster %s unavailable: %s", placement, type(exc).__name__
                )
                unreachable.add(placement)
                continue
            for slug, inserts in databases.items():
                key = (placement, slug)
                present.add(key)
                if not plan.due(key, inserts):
                    skipped.inc()
                    continue
                try:
                    info = rt.directory.get(slug)
                    if info is None or info.placement != placement:
                        continue
                    done, unsent = rt.dbs.sweep(info)
                except Exception as exc:  # noqa: BLE001 - still due: the next sweep tries again
                    log.warning("outbox sweep of %s failed: %s", slug, type(exc).__name__)
                    continue
                visited.inc()
                sent += done
                plan.swept(key, inserts, unsent)
        plan.keep_only(present, unreachable)
        return sent


def run_worker(service_cls: type, rt: Runtime) -> None:
    """Run the nameko service, bound to its contract, until SIGTERM/SIGINT."""
    service_cls = bind(service_cls, rt.deployment)  # a worker unlike its contract stops here
    for placement in rt.clusters.names:
        try:  # a cluster that is down must not keep the worker from serving the others
            rt.provisioner.ensure_template(placement)
        except Exception as exc:  # noqa: BLE001 - retried by the first provisioning there
            log.warning("template on cluster %s not ready: %s", placement, type(exc).__name__)
    config = {
        "AMQP_URI": rt.settings.amqp_url.get_secret_value(),
        "max_workers": rt.settings.worker_concurrency,
        PREFETCH_CONFIG_KEY: rt.settings.event_prefetch,
        GATHER_CONFIG_KEY: rt.settings.event_gather_ms,
        "serializer": "json",
        "HEARTBEAT": 30,
        PROCESS_CONFIG_KEY: WorkerProcess(rt),
    }
    runner = ServiceRunner(config)
    runner.add_service(service_cls)

    stopping = []

    def stop(*_):
        if not stopping:  # a second signal must not stop the containers twice
            stopping.append(True)
            eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.start()
    log.info("%s worker started", rt.service)
    ready_dir = os.environ.get("ONTRACK_READY_DIR")
    if ready_dir:  # a readiness file for supervisors and probes
        Path(ready_dir, f"{rt.service}-worker.ready").touch()
    runner.wait()
    rt.close()
    sys.exit(0)
