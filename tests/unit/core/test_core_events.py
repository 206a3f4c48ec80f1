"""Event envelopes: building, wire round trip, validation of what arrives from the bus."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ontrackio.catalogue import DEPLOYMENT, SERVICES
from ontrackio.core import events
from ontrackio.core.events import InvalidEvent
from ontrackio.core.grpcstatus import status_for
from ontrackio.core.v1 import core_pb2
from ontrackio.identity.v1 import events_pb2 as identity_events

REGISTRY = DEPLOYMENT.events


def created() -> events.Event:
    msg = identity_events.TenantCreated(
        slug="acme", name="Acme", tier="business", region="eu-central-1", placement="main"
    )
    return REGISTRY.new("identity.tenant_created", "acme", msg)


def wire(**changes) -> dict:
    body = created().to_wire()
    body.update(changes)
    return body


def test_new_event_has_envelope_fields():
    event = created()
    uuid.UUID(event.id)
    assert event.tenant == "acme" and event.type == "identity.tenant_created"
    assert event.schema_version == REGISTRY["identity.tenant_created"][1]
    assert event.occurred_at.tzinfo is not None
    assert (event.source, event.name) == ("identity", "tenant_created")
    assert event.payload["slug"] == "acme"


def test_new_events_get_distinct_ids():
    assert created().id != created().id


def test_wire_round_trip_preserves_the_event():
    event = created()
    assert REGISTRY.from_wire(event.to_wire()) == event


def test_wire_form_is_plain_json_types():
    body = created().to_wire()
    assert set(body) == {
        "id",
        "tenant",
        "type",
        "schema_version",
        "occurred_at",
        "trace",
        "payload",
    }
    assert isinstance(body["occurred_at"], str)
    datetime.fromisoformat(body["occurred_at"])


def test_message_parses_payload_into_registered_class():
    msg = REGISTRY.from_wire(created().to_wire()).message()
    assert isinstance(msg, identity_events.TenantCreated)
    assert (msg.slug, msg.tier, msg.placement) == ("acme", "business", "main")


def test_message_ignores_unknown_payload_fields():
    msg = REGISTRY.from_wire(wire(payload={"slug": "acme", "added_later": 1})).message()
    assert msg.slug == "acme"


def test_message_with_badly_typed_payload_is_invalid_event():
    with pytest.raises(InvalidEvent, match="bad payload"):
        REGISTRY.from_wire(wire(payload={"slug": {"nested": True}})).message()


def test_integer_payload_field_survives_round_trip():
    ready = core_pb2.TenantReady(slug="acme", service="privacy", schema_version=3)
    event = REGISTRY.new("privacy.tenant_ready", "acme", ready)
    assert REGISTRY.from_wire(event.to_wire()).message() == ready


def test_new_refuses_unknown_type():
    with pytest.raises(InvalidEvent, match="unknown event type"):
        REGISTRY.new("identity.tenant_exploded", "acme", identity_events.TenantCreated())


def test_new_refuses_wrong_message_class():
    with pytest.raises(InvalidEvent, match="TenantCreated"):
        REGISTRY.new("identity.tenant_created", "acme", identity_events.TenantDeleted(slug="acme"))


def test_an_invalid_envelope_is_answered_as_invalid_argument_with_its_reason():
    """What a caller is told when an envelope it sent is refused: INVALID_ARGUMENT with the
    refusal's own message (not INTERNAL and a generic text)."""
    with pytest.raises(InvalidEvent) as refused:
        REGISTRY.from_wire(wire(id="not-a-uuid"))
    code, detail = status_for(refused.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail == str(refused.value) and "malformed envelope" in detail


@pytest.mark.parametrize(
    "key", ["id", "tenant", "type", "schema_version", "occurred_at", "payload"]
)
def test_envelope_missing_a_key_is_refused(key):
    body = wire()
    del body[key]
    with pytest.raises(InvalidEvent, match="malformed envelope"):
        REGISTRY.from_wire(body)


def test_envelope_without_trace_is_accepted():
    body = wire()
    del body["trace"]
    assert REGISTRY.from_wire(body).trace == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "not-a-uuid"},
        {"id": None},
        {"occurred_at": "yesterday"},
        {"occurred_at": None},
        {"schema_version": "one"},
        {"payload": None},
        {"payload": "text"},
        {"trace": "traceparent"},
    ],
    ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))!r}",
)
def test_malformed_envelope_is_refused(changes):
    with pytest.raises(InvalidEvent):
        REGISTRY.from_wire(wire(**changes))


@pytest.mark.parametrize("bad_id", [12345, ["x"]])
def test_non_string_id_is_refused(bad_id):
    with pytest.raises(InvalidEvent):
        REGISTRY.from_wire(wire(id=bad_id))


@pytest.mark.parametrize("body", [None, [], "{}", 42, b"{}"])
def test_non_object_body_is_refused(body):
    with pytest.raises(InvalidEvent, match="not an object"):
        REGISTRY.from_wire(body)


def test_unknown_type_on_the_wire_is_refused():
    with pytest.raises(InvalidEvent, match="unknown event type"):
        REGISTRY.from_wire(wire(type="identity.tenant_exploded"))


# -- registry naming ---------------------------------------------------------------------

TYPE_RE = re.compile(r"^(?P<service>[a-z]+)\.(?P<noun>[a-z]+(?:_[a-z]+)*)_(?P<verb>[a-z]+)$")


@pytest.mark.parametrize("event_type", sorted(REGISTRY))
def test_registered_type_is_service_dot_noun_past_verb(event_type):
    m = TYPE_RE.match(event_type)
    assert m, event_type
    assert m["service"] in SERVICES
    assert m["verb"].endswith("ed") or m["verb"] == "ready"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_reports_its_tenant_lifecycle(service):
    for name in ("tenant_ready", "tenant_provisioning_failed", "tenant_dropped"):
        assert f"{service}.{name}" in REGISTRY


def test_registry_maps_to_message_classes_and_positive_versions():
    for event_type, (cls, version) in REGISTRY.items():
        assert isinstance(cls(), events.Message), event_type
        assert version >= 1, event_type


def test_event_source_and_name_split_at_first_dot():
    event = events.Event(
        id=str(uuid.uuid4()),
        tenant="acme",
        type="privacy.tenant_dropped",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        payload={},
    )
    assert (event.source, event.name) == ("privacy", "tenant_dropped")


def test_a_pack_unpacks_into_its_envelopes_and_anything_else_is_one():
    a, b = wire(), wire(id=str(uuid.uuid4()))
    assert events.unpack([a, b]) == [a, b]
    assert events.unpack(a) == [a]
    assert events.unpack("junk") == ["junk"]
    with pytest.raises(InvalidEvent):  # an empty pack is refused, not silently accepted
        REGISTRY.from_wire(*events.unpack([]))


def test_packs_group_by_routing_key_in_order_and_cap_their_size():
    from ontrackio.core import bus

    ready = core_pb2.TenantReady(slug="acme", service="privacy", schema_version=1)
    c = [created() for _ in range(bus.MAX_PACK + 3)]
    r = [REGISTRY.new("privacy.tenant_ready", "acme", ready) for _ in range(2)]
    mixed = [c[0], r[0], *c[1:], r[1]]
    out = bus.packs(mixed)
    assert [key for key, _ in out] == [
        ("identity", "tenant_created"),
        ("identity", "tenant_created"),
        ("privacy", "tenant_ready"),
    ]
    assert out[0][1] == c[: bus.MAX_PACK] and out[1][1] == c[bus.MAX_PACK :]
    assert out[2][1] == r


# -- hostile bodies from the bus -----------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # json.loads accepts NaN and Infinity
    | st.text(alphabet=st.characters(codec=None)),  # surrogates, NUL, full-width forms
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
KEYS = ("id", "tenant", "type", "schema_version", "occurred_at", "trace", "payload")


@settings(max_examples=400, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=len(KEYS)),
    dropped=st.sets(st.sampled_from(KEYS)),
)
def test_any_envelope_is_an_event_or_an_invalid_event(changes, dropped):
    body = wire(**changes)
    for key in dropped:
        body.pop(key, None)
    try:
        event = REGISTRY.from_wire(body)
    except InvalidEvent:
        return
    try:
        event.message()
    except InvalidEvent:
        pass


@settings(max_examples=200, deadline=None)
@given(body=JSON)
def test_any_body_is_an_event_or_an_invalid_event(body):
    with pytest.raises(InvalidEvent):
        REGISTRY.from_wire(body)


@pytest.mark.parametrize("version", [float("inf"), float("-inf"), float("nan"), 10**400])
def test_a_schema_version_beyond_integers_is_an_invalid_event(version):
    if isinstance(version, int):  # an enormous integer is still an integer
        assert REGISTRY.from_wire(wire(schema_version=version)).schema_version == version
        return
    with pytest.raises(InvalidEvent, match="malformed envelope"):
        REGISTRY.from_wire(wire(schema_version=version))


@settings(max_examples=300, deadline=None)
@given(
    payload=st.dictionaries(
        st.sampled_from(["slug", "name", "tier", "region", "placement", "other"]), JSON
    )
)
def test_any_payload_parses_or_is_an_invalid_event(payload):
    event = REGISTRY.from_wire(wire(payload=payload))
    try:
        event.message()
    except InvalidEvent as exc:
        assert "bad payload" in str(exc)
