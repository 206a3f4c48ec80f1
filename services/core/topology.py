"""The broker topology every worker consumes from, declared before anything is published.

nameko declares a handler's queue only when its worker starts; an event published before
then would reach no queue and be lost (say, the first tenant created while a worker is
still starting). So every process declares the whole table first. A unit test checks the
table against the handlers the worker classes really have.
"""

from __future__ import annotations

from kombu import Queue

from ontrackio.core.bus import DLQ, connect, events_exchange
from ontrackio.core.tenancy import SERVICES

# (consumer service, handler method, source service, event name)
SUBSCRIPTIONS: list[tuple[str, str, str, str]] = [
    *[(s, "handle_tenant_created", "identity", "tenant_created") for s in SERVICES],
    *[(s, "handle_tenant_deleted", "identity", "tenant_deleted") for s in SERVICES],
    *[
        ("identity", f"handle_{s}_{e}", s, e)
        for s in SERVICES
        for e in ("tenant_ready", "tenant_provisioning_failed", "tenant_dropped")
    ],
    ("inventory", "handle_user_created", "identity", "user_created"),
    ("inventory", "handle_user_deactivated", "identity", "user_deactivated"),
    ("privacy", "handle_user_created", "identity", "user_created"),
    ("evidence", "handle_asset_created", "inventory", "asset_created"),
]


def queue_name(consumer: str, method: str, source: str, event: str) -> str:
    """nameko's name for a SERVICE_POOL event handler's queue."""
    return f"evt-{source}-{event}--{consumer}.{method}"


def queues() -> list[Queue]:
    return [
        Queue(
            queue_name(*sub),
            exchange=events_exchange(sub[2]),
            routing_key=sub[3],
            durable=True,
            auto_delete=False,
        )
        for sub in SUBSCRIPTIONS
    ]


def declare(amqp_url: str) -> None:
    """Declare every events exchange, handler queue and the dead-letter queue (idempotent)."""
    with connect(amqp_url) as conn:
        channel = conn.channel()
        for q in queues():
            q(channel).declare()
        Queue(DLQ, durable=True)(channel).declare()
        channel.close()
