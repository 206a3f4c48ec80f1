"""Properties of encrypted field values (core/keys/fields.py), whose places (tenant, table,
column, row id) and values come from callers: ``aad`` is read back exactly by an
independent parser of its documented layout (so no two places share one), or refused with
InvalidArgument exactly when a part is empty or not Unicode text; a sealed value opens at its
place under its key, and a change to any part of the place or to any byte of the blob (or
its length) is FieldUnreadable, never another error and never a wrong value.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.core.errors import InvalidArgument
from ontrackio.core.keys import fields
from ontrackio.core.keys.fields import FieldUnreadable, InvalidFieldValue
from tests.unit.core.strategies import PROPERTY, hostile_text

keys = st.binary(min_size=32, max_size=32)
versions = st.integers(fields.MIN_VERSION, fields.MAX_VERSION)
# Parts as callers may send them, and parts that can be bound (text, not empty; NUL is
# fine in an AAD, which is never stored).
raw_parts = st.one_of(hostile_text, st.text(max_size=3))
parts = st.one_of(hostile_text, st.text(min_size=1)).map(
    lambda s: s.encode("utf-8", "replace").decode() or "x"
)
places = st.tuples(parts, parts, parts, parts)
values = st.one_of(
    st.binary(max_size=300),
    st.integers(fields.MAX_PLAINTEXT_BYTES - 4, fields.MAX_PLAINTEXT_BYTES).map(
        lambda n: bytes([n % 251]) * n
    ),
)


def parse_aad(raw: bytes) -> tuple[str, ...]:
    """The places of an AAD, read from the documented layout alone."""
    assert raw.startswith(b"ontrack:field:v1")
    pos, out = len(b"ontrack:field:v1"), []
    while pos < len(raw):
        n = int.from_bytes(raw[pos : pos + 4], "big")
        out.append(raw[pos + 4 : pos + 4 + n].decode("utf-8"))
        pos += 4 + n
    assert pos == len(raw)
    return tuple(out)


def _is_text(part: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in part)


@PROPERTY
@given(st.tuples(raw_parts, raw_parts, raw_parts, raw_parts))
@example(("a", "bc", "d", "e"))
@example(("", "t", "c", "1"))
@example(("t", "t", "c", "\ud800"))
def test_aad_is_read_back_exactly_or_refused_as_the_rule_says(place):
    if all(place) and all(map(_is_text, place)):
        assert parse_aad(fields.aad(*place)) == place
    else:
        with pytest.raises(InvalidArgument):
            fields.aad(*place)


@PROPERTY
@given(st.text(min_size=4, max_size=12), st.data())
def test_places_that_concatenate_alike_have_different_aad(joined, data):
    joined = joined.encode("utf-8", "replace").decode()

    def cut():
        points = st.lists(st.integers(1, len(joined) - 1), min_size=3, max_size=3, unique=True)
        a, b, c = sorted(data.draw(points))
        return joined[:a], joined[a:b], joined[b:c], joined[c:]

    one, other = cut(), cut()
    assert (fields.aad(*one) == fields.aad(*other)) == (one == other)


@PROPERTY
@given(keys, versions, places, values)
def test_a_sealed_value_opens_at_its_place(key, version, place, value):
    blob = fields.seal(key, version, fields.aad(*place), value)
    assert fields.version_of(blob) == version
    assert fields.unseal(key, fields.aad(*place), blob) == value


@PROPERTY
@given(keys, versions, places, st.one_of(hostile_text, st.text()))
@example(bytes(32), 1, ("t", "t", "c", "1"), "\x00")
@example(bytes(32), 1, ("t", "t", "c", "1"), "\udc80")
@example(bytes(32), 1, ("t", "t", "c", "1"), "\U0010ffff" * (fields.MAX_PLAINTEXT_BYTES // 4))
def test_text_round_trips_or_is_refused_as_the_rule_says(key, version, place, text):
    aad = fields.aad(*place)
    storable = "\x00" not in text and _is_text(text)
    fits = storable and len(text.encode("utf-8")) <= fields.MAX_PLAINTEXT_BYTES
    try:
        blob = fields.seal_text(key, version, aad, text)
    except InvalidFieldValue:
        assert not fits
        return
    assert fits
    assert fields.unseal_text(key, aad, blob) == text


@PROPERTY
@given(keys, versions, places, values, keys, st.integers(0, 3), parts, st.booleans())
def test_a_value_under_another_key_or_at_another_place_does_not_open(
    key, version, place, value, other_key, index, part, move
):
    """Either one part of the place changes (another tenant, table, column or row) or the
    key does."""
    blob = fields.seal(key, version, fields.aad(*place), value)
    moved = place[:index] + (part,) + place[index + 1 :] if move else place
    opener = key if move else other_key
    if (opener, moved) == (key, place):
        return
    with pytest.raises(FieldUnreadable) as info:
        fields.unseal(opener, fields.aad(*moved), blob)
    assert info.value.cause == "not_authentic"


@PROPERTY
@given(keys, versions, places, values, st.data())
def test_any_altered_byte_does_not_open(key, version, place, value, data):
    aad = fields.aad(*place)
    blob = bytearray(fields.seal(key, version, aad, value))
    index = data.draw(st.integers(0, len(blob) - 1))
    blob[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(FieldUnreadable):
        fields.unseal(key, aad, bytes(blob))


@PROPERTY
@given(keys, versions, places, values, st.data())
def test_a_blob_cut_or_extended_does_not_open(key, version, place, value, data):
    aad = fields.aad(*place)
    blob = fields.seal(key, version, aad, value)
    changed = data.draw(
        st.one_of(
            st.integers(0, len(blob) - 1).map(lambda n: blob[:n]),
            st.binary(min_size=1, max_size=20).map(lambda extra: blob + extra),
        )
    )
    with pytest.raises(FieldUnreadable):
        fields.unseal(key, aad, changed)


@PROPERTY
@given(st.one_of(st.binary(max_size=60), st.binary(max_size=40).map(lambda b: b"\x01" + b)))
def test_version_of_any_bytes_is_the_header_or_unreadable(blob):
    try:
        version = fields.version_of(blob)
    except FieldUnreadable as exc:
        expected = (
            "too_short"
            if len(blob) < fields.MIN_BLOB_BYTES
            else "unknown_format"
            if blob[0] != 1
            else "bad_version"
        )
        assert exc.cause == expected
        return
    assert len(blob) >= 33 and blob[0] == 1
    assert version == int.from_bytes(blob[1:5], "big") and 1 <= version < 2**31
