"""Properties of event envelopes and packs as they arrive from the bus (core/events.py,
core/bus.py): every event survives the wire (JSON, as kombu serialises it) exactly, alone or
in packs, in order; any other body is an `InvalidEvent`, and an envelope that is accepted
holds what the consumers rely on without checking again — a canonical id, a known type, a
time-zone-aware `occurred_at` (the lag metric subtracts it from an aware now), string-only
trace headers and a payload mapping.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st
from kombu.utils.json import dumps, loads

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import bus, events
from ontrackio.core.events import InvalidEvent
from ontrackio.core.v1 import core_pb2
from ontrackio.identity.v1 import events_pb2 as identity_events
from tests.unit.core.strategies import PROPERTY, hostile_text, json_values

REGISTRY = DEPLOYMENT.events
# Valid protobuf strings: any code point but a surrogate (protobuf refuses those).
proto_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones
)


@st.composite
def built_events(draw) -> events.Event:
    if draw(st.booleans()):
        message = identity_events.TenantCreated(
            slug=draw(proto_text), name=draw(proto_text), tier=draw(proto_text)
        )
        event = REGISTRY.new("identity.tenant_created", draw(proto_text), message)
    else:
        message = core_pb2.TenantReady(
            slug=draw(proto_text), service="privacy", schema_version=draw(st.integers(0, 2**31 - 1))
        )
        event = REGISTRY.new("privacy.tenant_ready", draw(proto_text), message)
    trace = draw(st.dictionaries(proto_text, proto_text, max_size=3))
    return dataclasses.replace(event, occurred_at=draw(moments), trace=trace)


def _over_the_wire(body):
    return loads(dumps(body))


def _check_accepted(event: events.Event) -> None:
    assert event.id == str(uuid.UUID(event.id))
    assert event.type in REGISTRY
    assert event.occurred_at.utcoffset() is not None
    datetime.now(UTC) - event.occurred_at  # what the lag metric computes  # noqa: B018
    assert isinstance(event.payload, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in event.trace.items())


@PROPERTY
@given(built_events())
def test_an_event_survives_the_wire_exactly(event):
    got = REGISTRY.from_wire(_over_the_wire(event.to_wire()))
    assert got == event
    assert got.occurred_at == event.occurred_at and got.message() == event.message()


@PROPERTY
@given(st.lists(built_events(), max_size=2 * bus.MAX_PACK + 5))
def test_packs_carry_every_event_once_in_order(sent):
    received: dict[tuple[str, str], list[events.Event]] = {}
    for key, pack in bus.packs(sent):
        assert 1 <= len(pack) <= bus.MAX_PACK
        # As Publisher.publish sends them: a lone event as its envelope, else a list.
        body = pack[0].to_wire() if len(pack) == 1 else [e.to_wire() for e in pack]
        got = [REGISTRY.from_wire(b) for b in events.unpack(_over_the_wire(body))]
        assert all((e.source, e.name) == key for e in got)
        received.setdefault(key, []).extend(got)
    for key, got in received.items():
        assert got == [e for e in sent if (e.source, e.name) == key]
    assert sum(map(len, received.values())) == len(sent)


def _base() -> dict:
    message = identity_events.TenantCreated(slug="acme")
    return REGISTRY.new("identity.tenant_created", "acme", message).to_wire()


odd_values = {
    "id": st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: "{" + str(u).upper() + "}"),
        st.uuids().map(lambda u: f"urn:uuid:{u}"),
        hostile_text,
    ),
    "type": st.sampled_from([*REGISTRY, "identity.", ".x", "identity.tenant_created\x00"]),
    "schema_version": st.one_of(st.integers(), st.sampled_from(["3", " 3", "\u0663", True])),
    "occurred_at": st.one_of(
        st.datetimes().map(datetime.isoformat),  # naive: no time zone
        moments.map(datetime.isoformat),
        st.sampled_from(["2026-01-01", "2026-01-01T00:00:00+24:00", "\uff12\uff10\uff12\uff16"]),
        hostile_text,
    ),
    "trace": st.one_of(st.dictionaries(hostile_text, json_values, max_size=3), json_values),
    "payload": json_values,
    "tenant": json_values,
}


@PROPERTY
@given(
    st.fixed_dictionaries({}, optional={k: v | json_values for k, v in odd_values.items()}),
    st.sets(st.sampled_from(sorted(odd_values))),
)
@example({"occurred_at": "2026-01-01T00:00:00"}, set())
@example({"payload": {"\ud800": None}}, set())
def test_an_envelope_is_usable_or_an_invalid_event(changes, dropped):
    body = {**_base(), **changes}
    for key in dropped:
        body.pop(key, None)
    try:
        event = REGISTRY.from_wire(_over_the_wire(body))
    except InvalidEvent:
        return
    _check_accepted(event)
    try:
        event.message()
    except InvalidEvent as exc:
        assert "bad payload" in str(exc)


@PROPERTY
@given(json_values | st.lists(json_values, max_size=5))
def test_any_body_unpacks_into_envelopes_each_usable_or_invalid(body):
    envelopes = events.unpack(body)
    assert envelopes and (envelopes == body if isinstance(body, list) and body else True)
    for envelope in envelopes:
        try:
            _check_accepted(REGISTRY.from_wire(envelope))
        except InvalidEvent:
            pass
