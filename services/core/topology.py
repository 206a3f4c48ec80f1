"""The broker topology every worker consumes from, declared before anything is published.

nameko declares a handler's queue only when its worker starts; an event published before
then would reach no queue and be lost (say, the first tenant created while a worker is
still starting). So every process declares the queues of every subscription of its
deployment (core/contract.py) first. A unit test checks the subscriptions against the
handlers the bound worker classes really have.
"""

from __future__ import annotations

from kombu import Queue

from ontrackio.core.bus import DLQ, connect, events_exchange
from ontrackio.core.contract import Deployment, Subscription


def queue_name(consumer: str, method: str, source: str, event: str) -> str:
    """nameko's name for a SERVICE_POOL event handler's queue."""
    return f"evt-{source}-{event}--{consumer}.{method}"


def queue(sub: Subscription) -> Queue:
    """The durable queue of one subscription, bound to its source's events exchange."""
    return Queue(
        queue_name(sub.consumer, sub.handler, sub.source, sub.event),
        exchange=events_exchange(sub.source),
        routing_key=sub.event,
        durable=True,
        auto_delete=False,
    )


def queues(deployment: Deployment) -> list[Queue]:
    return [queue(sub) for sub in deployment.subscriptions]


def declare(amqp_url: str, deployment: Deployment) -> None:
    """Declare every events exchange, handler queue and the dead-letter queue (idempotent)."""
    with connect(amqp_url) as conn:
        channel = conn.channel()
        for q in queues(deployment):
            q(channel).declare()
        Queue(DLQ, durable=True)(channel).declare()
        channel.close()
