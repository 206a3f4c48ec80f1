"""Events: the envelope, the registry of event types, and their wire form.

An event type is "<service>.<noun>_<past-verb>". It travels on the topic exchange
"<service>.events" (nameko's naming; deployments are kept apart by
RabbitMQ virtual host) with the part after the dot as routing key, as a JSON
envelope: id, tenant, type, schema_version, occurred_at, trace, payload (the JSON mapping
of the protobuf message registered for the type). Events published together with the same
routing key travel as one message whose body is a list of envelopes (a pack, see
core/bus.py): every consumer reads a body with `unpack`.

The known types are an `EventTypes` value a process builds from the contracts of the
services it knows (core/contract.py); this module names no service and no event.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from ontrackio.core import telemetry
from ontrackio.core.errors import InvalidArgument


class InvalidEvent(InvalidArgument):
    """A message on the bus is not a well-formed event of a known type."""


@dataclass(frozen=True)
class Event:
    id: str
    tenant: str
    type: str
    schema_version: int
    occurred_at: datetime
    payload: dict[str, Any]
    trace: dict[str, str] = field(default_factory=dict)
    # The payload's registered message class (set by EventTypes; not part of the wire form).
    payload_class: type[Message] | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> str:
        return self.type.split(".", 1)[0]

    @property
    def name(self) -> str:
        """Routing key: the type without its service prefix."""
        return self.type.split(".", 1)[1]

    def message(self) -> Message:
        """The payload parsed into its registered protobuf message."""
        if self.payload_class is None:
            raise InvalidEvent(f"{self.type}: not built or parsed by EventTypes")
        try:
            return json_format.ParseDict(
                self.payload, self.payload_class(), ignore_unknown_fields=True
            )
        except (json_format.ParseError, UnicodeError, SystemError) as exc:
            # upb answers a field name holding a lone surrogate (valid JSON, "\\ud800") with
            # a SystemError chained to the UnicodeEncodeError, not a ParseError.
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


def unpack(body: Any) -> list[Any]:
    """The envelopes a message body carries: a pack (a non-empty list) holds several; any
    other body is one, which `from_wire` validates (an empty list is refused there)."""
    if isinstance(body, list) and body:
        return body
    return [body]


class EventTypes:
    """The event types a process knows: type -> (payload message class, schema version).

    Immutable; built from the services' contracts (core/contract.py). It makes new events
    and validates the ones that arrive from the bus.
    """

    def __init__(self, types: Mapping[str, tuple[type[Message], int]]) -> None:
        self._types = dict(types)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def __getitem__(self, event_type: str) -> tuple[type[Message], int]:
        return self._types[event_type]

    def items(self):
        return self._types.items()

    def new(self, event_type: str, tenant: str, message: Message) -> Event:
        """A new event carrying the current trace context; InvalidEvent for an unknown type
        or a message of another class than the type's."""
        try:
            cls, version = self._types[event_type]
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
            payload_class=cls,
        )

    def from_wire(self, body: Any) -> Event:
        """Parse and validate an envelope received from the bus; InvalidEvent if it is
        malformed or of an unknown type."""
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
            if event.occurred_at.utcoffset() is None:  # consumers subtract it from aware times
                raise ValueError("occurred_at has no time zone")
            event.occurred_at.astimezone(UTC)  # OverflowError past year 9999 or before year 1
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise InvalidEvent(f"malformed envelope: {type(exc).__name__}: {exc}") from None
        if event.type not in self._types:
            raise InvalidEvent(f"unknown event type {event.type!r}")
        return dataclasses.replace(event, payload_class=self._types[event.type][0])
