"""Service contracts: the events a service publishes and the events it subscribes to.

Each service declares one `Contract` in its own contract.py. A process is handed the
contracts of the services it knows, as a `Deployment`, by its entrypoint; from that core
assembles the event types (core/events.py), the broker topology (core/topology.py) and
binds the worker's handlers to their queues (core/binding.py). Core names no service.

The tenant lifecycle every service shares is described here, generically: a service that
follows a tenant registry (`tenants_from`) subscribes to the registry's `tenant_created`
and `tenant_deleted` with the handlers every worker inherits (core/worker.py), and
publishes its own `tenant_ready`, `tenant_provisioning_failed` and `tenant_dropped`
reports; the registry hears the reports of every service of the deployment through
`from_every_service`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from ontrackio.core.directory import TenantInfo
from ontrackio.core.events import EventTypes
from ontrackio.core.keys.reencrypt import EncryptedColumn
from ontrackio.core.keys.ring import KeySource
from ontrackio.core.v1 import core_pb2

# (settings, the calling service) -> a look-up of one tenant by slug (None: no such tenant).
TenantLookup = Callable[[Any, str], Callable[[str], TenantInfo | None]]
# (settings, the calling service) -> that service's wrapped data keys of a tenant.
KeySourceFactory = Callable[[Any, str], KeySource]

# What a lifecycle follower subscribes to: handler -> the registry's event (the registry's
# messages for them carry at least `slug` and `placement`).
LIFECYCLE_HANDLERS: Mapping[str, str] = {
    "handle_tenant_created": "tenant_created",
    "handle_tenant_deleted": "tenant_deleted",
    # a new data key version: re-encrypt the service's older rows (core/keys/reencrypt.py)
    "handle_data_keys_rotated": "data_keys_rotated",
}
# What a lifecycle follower reports: event -> (payload message, schema version).
LIFECYCLE_REPORTS: Mapping[str, tuple[type[Message], int]] = {
    "tenant_ready": (core_pb2.TenantReady, 1),
    "tenant_provisioning_failed": (core_pb2.TenantProvisioningFailed, 1),
    "tenant_dropped": (core_pb2.TenantDropped, 1),
}


class ContractError(Exception):
    """Contracts that do not fit together, or a worker that does not fit its contract.

    A programming error found at start (and by the unit tests), never at run time."""


@dataclass(frozen=True)
class Subscription:
    """One handler of one consumer for one source event; it names one queue.

    `method` is the worker method that implements it (several subscriptions may share one,
    e.g. the registry's handler of every service's `tenant_ready`)."""

    consumer: str
    handler: str
    source: str
    event: str
    method: str

    @property
    def event_type(self) -> str:
        return f"{self.source}.{self.event}"


@dataclass(frozen=True)
class Contract:
    """What one service promises the others.

    - `publishes`: event name (without the service prefix) -> (payload message, version);
    - `subscribes`: handler method -> (source service, event name);
    - `tenants_from`: the tenant registry whose lifecycle this service follows (None: none);
    - `from_every_service`: event name every service of the deployment publishes -> the
      method handling it; each service's event gets the handler `handle_<service>_<event>`;
    - `encrypted`: the columns of its tenant databases that hold encrypted fields
      (core/keys/envelope.py), which core re-encrypts after a data key rotation and
      reports on (EncryptionService).
    """

    service: str
    publishes: Mapping[str, tuple[type[Message], int]] = field(default_factory=dict)
    subscribes: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    tenants_from: str | None = None
    from_every_service: Mapping[str, str] = field(default_factory=dict)
    encrypted: tuple[EncryptedColumn, ...] = ()

    def published(self) -> dict[str, tuple[type[Message], int]]:
        """Every event type this service publishes, lifecycle reports included."""
        own = dict(LIFECYCLE_REPORTS) if self.tenants_from else {}
        own.update(self.publishes)
        return {f"{self.service}.{name}": spec for name, spec in own.items()}


class Deployment:
    """The contracts of the services one process knows, checked to fit together.

    Raises ContractError if two contracts name the same service, a subscription names an
    event no contract publishes, or a consumer has two subscriptions with one handler name.
    """

    def __init__(
        self,
        contracts: Iterable[Contract],
        *,
        tenant_lookup: TenantLookup | None = None,
        key_source: KeySourceFactory | None = None,
    ) -> None:
        self.contracts: tuple[Contract, ...] = tuple(contracts)
        # How a process of another service reaches the tenant registry (None: only the
        # registry's own service runs here, with its own bootstrap), and the key store.
        self.tenant_lookup = tenant_lookup
        self.key_source = key_source
        self.services: tuple[str, ...] = tuple(c.service for c in self.contracts)
        problems = [f"service {s!r} has two contracts" for s in _twice(self.services)]
        types: dict[str, tuple[type[Message], int]] = {}
        for contract in self.contracts:
            types.update(contract.published())
        self.events = EventTypes(types)
        self.subscriptions: tuple[Subscription, ...] = tuple(
            sub for c in self.contracts for sub in self._expand(c)
        )
        problems += [
            f"{s.consumer}.{s.handler} subscribes to {s.event_type}, which no contract publishes"
            for s in self.subscriptions
            if s.event_type not in self.events
        ]
        problems += [
            f"{consumer}.{handler} is declared twice"
            for consumer, handler in _twice((s.consumer, s.handler) for s in self.subscriptions)
        ]
        if problems:
            raise ContractError("; ".join(problems))

    def _expand(self, c: Contract) -> list[Subscription]:
        subs = [Subscription(c.service, h, src, e, h) for h, (src, e) in c.subscribes.items()]
        if c.tenants_from:
            subs += [
                Subscription(c.service, h, c.tenants_from, e, h)
                for h, e in LIFECYCLE_HANDLERS.items()
            ]
        subs += [
            Subscription(c.service, f"handle_{other}_{event}", other, event, method)
            for event, method in c.from_every_service.items()
            for other in self.services
        ]
        return subs

    def contract(self, service: str) -> Contract:
        """The contract of `service`; ContractError if this deployment has none."""
        for contract in self.contracts:
            if contract.service == service:
                return contract
        raise ContractError(f"no contract for service {service!r}")

    def subscriptions_of(self, service: str) -> list[Subscription]:
        return [s for s in self.subscriptions if s.consumer == service]


def _twice(items: Iterable) -> list:
    seen: set = set()
    again: list = []
    for item in items:
        if item in seen and item not in again:
            again.append(item)
        seen.add(item)
    return again
