"""Hostile bytes in gRPC requests: invalid UTF-8 and NUL in string fields, named precisely.

`checked(deserializer, descriptor)` wraps a method's request deserializer. It never raises
(grpcio turns a raising deserializer into INTERNAL): bytes that do not parse, a string
field that is not UTF-8, or a string containing NUL (PostgreSQL refuses NUL in text, and
nothing in the platform means it) become a `BadRequest` naming the field (``domains[1]``,
``services[0].state``), which the server interceptor answers with INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_STRING, _MESSAGE = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE
_MAX_DEPTH = 100  # protobuf's own recursion limit


@dataclass(frozen=True)
class BadRequest:
    """A request that must not reach the servicer; `detail` is safe to return."""

    detail: str


def checked(
    deserializer: Callable[[bytes], Message], descriptor: Descriptor
) -> Callable[[bytes], Message | BadRequest]:
    """`deserializer`, answering BadRequest instead of raising or passing NUL through."""

    def parse(data: bytes) -> Message | BadRequest:
        try:
            message = deserializer(data)
        except Exception:  # noqa: BLE001 - DecodeError, or a nesting limit: both bad input
            where = invalid_utf8_field(descriptor, data)
            if where is not None:
                return BadRequest(f"{where}: not valid UTF-8")
            return BadRequest(f"request is not a valid {descriptor.name}")
        # A NUL in a string leaves a zero byte on the wire; most requests have none at all.
        if b"\0" in data:
            where = nul_field(message)
            if where is not None:
                return BadRequest(f"{where}: NUL characters are not allowed")
        return message

    return parse


def nul_field(message: Message, prefix: str = "", depth: int = 0) -> str | None:
    """The path of the first string field (nested, repeated or map) holding a NUL, or None."""
    if depth > _MAX_DEPTH:
        return None
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == _STRING:
            if field.is_repeated:
                for i, v in enumerate(value):
                    if "\0" in v:
                        return f"{name}[{i}]"
            elif "\0" in value:
                return name
        elif field.type == _MESSAGE:
            if field.message_type.GetOptions().map_entry:
                found = _nul_in_map(field, value, name, depth)
            elif field.is_repeated:
                found = next(
                    (
                        f
                        for i, m in enumerate(value)
                        if (f := nul_field(m, f"{name}[{i}].", depth + 1)) is not None
                    ),
                    None,
                )
            else:
                found = nul_field(value, name + ".", depth + 1)
            if found is not None:
                return found
    return None


def _nul_in_map(field: FieldDescriptor, value, name: str, depth: int) -> str | None:
    value_field = field.message_type.fields_by_name["value"]
    for k, v in value.items():
        if isinstance(k, str) and "\0" in k:
            return f"{name} (a key)"
        if value_field.type == _STRING and "\0" in v:
            return f"{name} (a value)"
        if value_field.type == _MESSAGE:
            found = nul_field(v, f"{name} (a value).", depth + 1)
            if found is not None:
                return found
    return None


def invalid_utf8_field(
    descriptor: Descriptor, data: bytes, prefix: str = "", depth: int = 0
) -> str | None:
    """Walk the wire format of `data` as `descriptor` and return the path of the first
    string field whose bytes are not UTF-8 (None when there is none or `data` is
    malformed before one is found)."""
    if depth > _MAX_DEPTH:
        return None
    pos, end = 0, len(data)
    seen: dict[int, int] = {}
    while pos < end:
        key, pos = _varint(data, pos)
        if key is None:
            return None
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
            if pos < 0:
                return None
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(data, pos)
            if length is None or pos + length > end:
                return None
            chunk = data[pos : pos + length]
            pos += length
            field = descriptor.fields_by_number.get(number)
            if field is None:
                continue
            name = prefix + field.name
            if field.is_repeated:
                index = seen.get(number, 0)
                seen[number] = index + 1
                if not (field.type == _MESSAGE and field.message_type.GetOptions().map_entry):
                    name = f"{name}[{index}]"
            if field.type == _STRING:
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError:
                    return name
            elif field.type == _MESSAGE:
                found = invalid_utf8_field(field.message_type, chunk, name + ".", depth + 1)
                if found is not None:
                    return found
        else:  # groups (not in proto3) or garbage
            return None
    return None


def _varint(data: bytes, pos: int) -> tuple[int | None, int]:
    """The varint at `pos` and the position after it; (None, -1) if malformed."""
    result = shift = 0
    while pos < len(data) and shift < 70:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    return None, -1
