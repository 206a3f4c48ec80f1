"""Units of work on a tenant's database: one transaction, its outbox events and inbox."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from google.protobuf.message import Message
from opentelemetry import context as otel_context

from ontrackio.core import events as ev
from ontrackio.core import outbox
from ontrackio.core.bus import Publisher
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.errors import Unavailable
from ontrackio.core.relay import Relay
from ontrackio.core.tenancy import Names

log = logging.getLogger(__name__)
AWAIT_PUBLISH_SECONDS = 2.0


class UnitOfWork:
    """One transaction on one tenant database; collects the events it emits."""

    def __init__(self, conn: psycopg.Connection, tenant: str, types: ev.EventTypes | None = None):
        self.conn = conn
        self.tenant = tenant
        self.types = types  # the event types it may emit (None: it emits none)
        self.events: list[ev.Event] = []
        self.await_publish = False
        # While an event consumer's effect runs: each payload's trace context (see emit).
        self.causes: dict[int, otel_context.Context] = {}

    def emit(
        self,
        event_type: str,
        message: Message,
        tenant: str | None = None,
        *,
        await_publish: bool = False,
        cause: Message | None = None,
    ) -> ev.Event:
        """Record an event in the outbox, in this transaction (about `tenant`, by default
        this unit's). InvalidEvent for a type the unit does not know.

        `cause`: in an event consumer's effect, the payload this event follows from; the new
        event then continues that payload's trace (an effect receives several payloads at
        once, so the current trace context is not theirs). Without it, an effect given one
        payload continues that payload's trace."""
        # `await_publish`: the unit of work returns only once the broker has the event (best
        # effort, bounded) — for changes others must see at once, such as revocations.
        self.await_publish |= await_publish
        if cause is not None:
            context = self.causes.get(id(cause))
        else:
            context = next(iter(self.causes.values())) if len(self.causes) == 1 else None
        if self.types is None:
            raise ev.InvalidEvent(f"this unit of work emits no events, not {event_type!r}")
        token = otel_context.attach(context) if context is not None else None
        try:
            event = self.types.new(event_type, self.tenant if tenant is None else tenant, message)
        finally:
            if token is not None:
                otel_context.detach(token)
        outbox.add(self.conn, event)
        self.events.append(event)
        return event

    def first_delivery(self, event: ev.Event) -> bool:
        """Record `event` in the inbox; False if it was applied before (skip the effect)."""
        return event.id in self.first_deliveries([event])

    def first_deliveries(self, events: list[ev.Event]) -> set[str]:
        """Record `events` in the inbox in one statement; returns the ids recorded now
        (the others were applied before: skip their effects)."""
        cur = self.conn.execute(
            "INSERT INTO inbox (event_id, type)"
            " SELECT * FROM unnest(%s::uuid[], %s::text[]) ON CONFLICT DO NOTHING"
            " RETURNING event_id",
            ([e.id for e in events], [e.type for e in events]),
        )
        return {str(row[0]) for row in cur.fetchall()}


class TenantDatabases:
    """A service's access to its tenants' databases, as each tenant's own login role."""

    def __init__(
        self,
        service: str,
        *,
        deployment: str,
        clusters: Clusters,
        pools: PoolManager,
        directory: TenantDirectory,
        publisher: Publisher | None,
        relay: Relay | None = None,
        events: ev.EventTypes | None = None,
    ):
        self.service = service
        self.names = Names(deployment, service)
        self.clusters = clusters
        self.pools = pools
        self.directory = directory
        self.publisher = publisher
        self.relay = relay
        self.events = events  # the event types its units of work may emit

    @contextmanager
    def connection(self, info: TenantInfo) -> Iterator[psycopg.Connection]:
        db = self.names.tenant_database(info.slug)
        with self.pools.connection(
            f"{info.placement}/{db}",
            lambda: self.clusters.tenant_conninfo(self.service, info.slug, info.placement),
        ) as conn:
            yield conn

    def key(self, info: TenantInfo) -> str:
        return f"{info.placement}/{self.names.tenant_database(info.slug)}"

    def unit_of_work(self, info: TenantInfo):
        """A transaction on the tenant's database, committed when the block ends.

        Events emitted in it are handed to the relay right after the commit (see
        core/relay.py); the worker's sweep is the last resort.
        Database failures raise Unavailable.
        """
        return self.unit_of_work_at(
            self.key(info),
            info.slug,
            lambda: self.clusters.tenant_conninfo(self.service, info.slug, info.placement),
        )

    @contextmanager
    def unit_of_work_at(self, key: str, label: str, conninfo) -> Iterator[UnitOfWork]:
        """As unit_of_work, for any database with an outbox (e.g. a control database)."""
        with self.pools.connection(key, conninfo) as conn:
            uow = UnitOfWork(conn, label, self.events)
            try:
                with conn.transaction():
                    yield uow
            except psycopg.OperationalError as exc:
                raise Unavailable("database unavailable; retry later") from exc
            if uow.events and self.relay is not None:
                done = self.relay.submit(key, label, conninfo, uow.events, urgent=uow.await_publish)
                if uow.await_publish:
                    done.wait(AWAIT_PUBLISH_SECONDS)

    def sweep(self, info: TenantInfo, min_age: float = 5.0) -> tuple[int, int]:
        """Publish the tenant's unsent events older than `min_age` seconds; returns how
        many were sent and how many unsent ones are left (younger, or written meanwhile)."""
        with self.connection(info) as conn:
            sent = outbox.sweep(conn, self.publisher, min_age=min_age)
            return sent, outbox.backlog(conn)

    def drop_pool(self, info: TenantInfo) -> None:
        self.pools.drop(f"{info.placement}/{self.names.tenant_database(info.slug)}")
