"""Events: the envelope, the registry of event types, and their wire form.

An event type is "<service>.<noun>_<past-verb>". It travels on the topic exchange
"<service>.events" (nameko's naming; deployments are kept apart by
RabbitMQ virtual host) with the part after the dot as routing key, as a JSON
envelope: id, tenant, type, schema_version, occurred_at, trace, payload (the JSON mapping
of the protobuf message registered for the type). Events published together with the same
routing key travel as one message whose body is a list of envelopes (a pack, see
core/bus.py): every consumer reads a body with `unpack`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from ontrackio.core import telemetry
from ontrackio.core.errors import InvalidArgument
from ontrackio.core.tenancy import SERVICES
from ontrackio.core.v1 import core_pb2
from ontrackio.identity.v1 import access_pb2 as identity_access
from ontrackio.identity.v1 import events_pb2 as identity_events
from ontrackio.inventory.v1 import events_pb2 as inventory_events


class InvalidEvent(InvalidArgument):
    """A message on the bus is not a well-formed event of a known type."""


# type -> (payload message class, current schema version)
REGISTRY: dict[str, tuple[type[Message], int]] = {
    "identity.tenant_created": (identity_events.TenantCreated, 1),
    "identity.tenant_activated": (identity_events.TenantActivated, 1),
    "identity.tenant_deleted": (identity_events.TenantDeleted, 1),
    "identity.user_created": (identity_events.UserCreated, 1),
    "identity.user_deactivated": (identity_events.UserDeactivated, 1),
    "identity.token_revoked": (identity_access.TokenRevoked, 1),
    "identity.allowlist_changed": (identity_access.AllowlistChanged, 1),
    "inventory.asset_created": (inventory_events.AssetCreated, 1),
}
for _svc in SERVICES:
    REGISTRY[f"{_svc}.tenant_ready"] = (core_pb2.TenantReady, 1)
    REGISTRY[f"{_svc}.tenant_provisioning_failed"] = (core_pb2.TenantProvisioningFailed, 1)
    REGISTRY[f"{_svc}.tenant_dropped"] = (core_pb2.TenantDropped, 1)


def register(event_type: str, message: type[Message], schema_version: int = 1) -> None:
    """Add an event type (later issues register their own)."""
    REGISTRY[event_type] = (message, schema_version)


@dataclass(frozen=True)
class Event:
    id: str
    tenant: str
    type: str
    schema_version: int
    occurred_at: datetime
    payload: dict[str, Any]
    trace: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.type.split(".", 1)[0]

    @property
    def name(self) -> str:
        """Routing key: the type without its service prefix."""
        return self.type.split(".", 1)[1]

    def message(self) -> Message:
        """The payload parsed into its registered protobuf message."""
        cls, _ = REGISTRY[self.type]
        try:
            return json_format.ParseDict(self.payload, cls(), ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise InvalidEvent(f"{self.type}: bad payload: {exc}") from None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "type": self.type,
            "schema_version": self.schema_version,
            "occurred_at": self.occurred_at.isoformat(),
            "trace": self.trace,
            "payload": self.payload,
        }


def new(event_type: str, tenant: str, message: Message) -> Event:
    """A new event carrying the current trace context."""
    try:
        cls, version = REGISTRY[event_type]
    except KeyError:
        raise InvalidEvent(f"unknown event type {event_type!r}") from None
    if not isinstance(message, cls):
        raise InvalidEvent(f"{event_type} carries {cls.__name__}, not {type(message).__name__}")
    return Event(
        id=str(uuid.uuid4()),
        tenant=tenant,
        type=event_type,
        schema_version=version,
        occurred_at=datetime.now(UTC),
        payload=json_format.MessageToDict(message, preserving_proto_field_name=True),
        trace=telemetry.inject(),
    )


def unpack(body: Any) -> list[Any]:
    """The envelopes a message body carries: a pack (a non-empty list) holds several; any
    other body is one, which `from_wire` validates (an empty list is refused there)."""
    if isinstance(body, list) and body:
        return body
    return [body]


def from_wire(body: Any) -> Event:
    """Parse and validate an envelope received from the bus."""
    if not isinstance(body, dict):
        raise InvalidEvent("event body is not an object")
    try:
        event = Event(
            id=str(uuid.UUID(body["id"])),
            tenant=str(body["tenant"]),
            type=str(body["type"]),
            schema_version=int(body["schema_version"]),
            occurred_at=datetime.fromisoformat(body["occurred_at"]),
            payload=dict(body["payload"]),
            trace={str(k): str(v) for k, v in dict(body.get("trace") or {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidEvent(f"malformed envelope: {type(exc).__name__}: {exc}") from None
    if event.type not in REGISTRY:
        raise InvalidEvent(f"unknown event type {event.type!r}")
    return event
