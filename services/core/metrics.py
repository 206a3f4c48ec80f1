"""Prometheus metrics of the api and worker processes (the gateway has its own).

Counters and histograms are updated where the work happens; gauges of the process's
infrastructure (pools, relay, dead-letter queue) are read when scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

GRPC_REQUESTS = Counter("ontrack_grpc_requests", "gRPC calls served", ["service", "method", "code"])
GRPC_SECONDS = Histogram(
    "ontrack_grpc_request_seconds",
    "gRPC call duration",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_HANDLED = Counter(
    "ontrack_events_handled",
    "Events consumed, by outcome (applied, duplicate, failed)",
    ["service", "type", "outcome"],
)
OUTBOX_SWEEP_DATABASES = Counter(
    "ontrack_outbox_sweep_databases",
    "Tenant databases the periodic outbox sweep visited, or skipped as unchanged since a "
    "sweep that left their outbox empty",
    ["service", "outcome"],
)
EVENTS_REFUSED = Counter(
    "ontrack_events_refused",
    "Events a handler refused to act on because the registry contradicts them (parked)",
    ["service", "type"],
)
EVENT_LAG = Histogram(
    "ontrack_event_lag_seconds",
    "From an event's occurred_at to its handling",
    ["service", "type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

KEY_REFUSALS = Counter(
    "ontrack_tenant_key_refusals",
    "Uses of a tenant's data keys refused because its key is unavailable (fail closed), "
    "by cause (disabled, pending_deletion, access_denied, not_found, unreachable, invalid)",
    ["service", "cause"],
)
KEY_UNWRAPS = Counter(
    "ontrack_tenant_key_unwraps",
    "Key rings fetched and unwrapped at the KMS (a first use, or after the cache time)",
    ["service", "outcome"],
)
REENCRYPTED_ROWS = Counter(
    "ontrack_reencrypted_rows",
    "Encrypted values re-encrypted under a tenant's current data key version",
    ["service"],
)


class RuntimeCollector:
    """Pool, relay and (in workers) dead-letter-queue figures of one process."""

    def __init__(self, service: str, role: str, rt, dlq_depth: Callable[[], int] | None = None):
        self._labels = [service, role]
        self._rt = rt
        self._dlq_depth = dlq_depth

    def collect(self):
        stats = self._rt.pools.stats()
        labels = ["service", "role"]
        for name, value, help_ in [
            ("ontrack_pool_connections", stats.total, "Connections held (idle + in use)"),
            ("ontrack_pool_connections_in_use", stats.in_use, "Connections in use"),
            ("ontrack_pool_tenants", stats.pools, "Databases with a pool"),
            ("ontrack_pool_connections_max", self._rt.pools.max_total, "Per-process cap"),
            ("ontrack_relay_pending_batches", self._rt.relay.pending, "Units awaiting publish"),
            ("ontrack_relay_unsent_outboxes", self._rt.relay.unsent, "Outboxes being retried"),
            (
                "ontrack_tenant_keys_unavailable",
                self._rt.keys.unavailable(),
                "Tenants whose key this process could not use at its last attempt",
            ),
        ]:
            g = GaugeMetricFamily(name, help_, labels=labels)
            g.add_metric(self._labels, value)
            yield g
        for name, value, help_ in [
            ("ontrack_pool_connections_opened", stats.opened, "Connections opened"),
            ("ontrack_pool_connections_evicted", stats.evicted, "Closed for another tenant"),
        ]:
            c = CounterMetricFamily(name, help_, labels=labels)
            c.add_metric(self._labels, value)
            yield c
        if self._dlq_depth is not None:
            g = GaugeMetricFamily("ontrack_dlq_messages", "Messages parked in the DLQ")
            try:
                g.add_metric([], self._dlq_depth())
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail on the broker
                log.warning("DLQ depth unavailable: %s", type(exc).__name__)
                return
            yield g


def serve(port: int, host: str, collector: RuntimeCollector) -> None:
    """Expose /metrics on host:port (0 disables it)."""
    if not port:
        return
    REGISTRY.register(collector)
    start_http_server(port, addr=host)
    log.info("metrics on http://%s:%d/metrics", host, port)
