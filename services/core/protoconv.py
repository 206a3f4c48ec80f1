"""Small conversions between database rows and protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    t = Timestamp()
    t.FromDatetime(value)
    return t


def time_field(message, name: str, invalid: type[Exception]) -> datetime | None:
    """The optional timestamp field ``name`` of ``message`` as an aware UTC datetime, or None
    when unset. A value outside datetime's range raises ``invalid`` (an InvalidArgument) with
    the field's name, so hostile input is a clear INVALID_ARGUMENT, never INTERNAL."""
    if not message.HasField(name):
        return None
    try:
        return getattr(message, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid(f"{name} is out of range") from None
