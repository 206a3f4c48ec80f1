"""Properties of page tokens (core/paging.py), the opaque cursors every list call hands out
and takes back from callers: what `encode` writes, `decode` reads back exactly; whatever else
a caller sends — any text, any bytes in base64, JSON of any shape, nested to any depth — is
the first page ("") or `InvalidArgument`, never another error (gRPC would answer INTERNAL).
"""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.core import paging
from ontrackio.core.errors import InvalidArgument
from tests.unit.core.strategies import (
    PROPERTY,
    b64,
    depths,
    hostile_text,
    json_bytes,
    json_values,
    nested,
)

# What a caller may put where a token goes.
tokens = st.one_of(
    hostile_text,
    st.binary(max_size=200).map(b64),
    json_values.map(json_bytes).map(b64),
    st.dictionaries(st.sampled_from(["after", "before", "x"]), json_values, max_size=3)
    .map(json_bytes)
    .map(b64),
    depths.map(lambda d: b64(nested(d).encode())),
    depths.map(lambda d: b64(('{"after":' + nested(d) + "}").encode())),
    st.uuids().map(lambda u: paging.encode(str(u)) + "\u0661"),
)


def _decode(fn, token):
    """`fn(token)`'s answer, or InvalidArgument's class; anything else propagates."""
    try:
        return fn(token)
    except InvalidArgument:
        return InvalidArgument


@PROPERTY
@given(st.uuids())
def test_every_uuid_round_trips(value):
    token = paging.encode(str(value))
    assert token.isascii() and "=" not in token
    assert paging.decode(token) == str(value)


@PROPERTY
@given(st.integers(1, (1 << 63) - 1))
def test_every_position_round_trips(position):
    assert paging.decode_position(paging.encode_position(position)) == position


@PROPERTY
@given(tokens)
@example(b64(b"[" * 100_000))
@example(b64(nested(2000).encode()))
@example(paging.encode(str(uuid.uuid4())).upper())
def test_a_token_is_a_uuid_or_invalid_argument(token):
    got = _decode(paging.decode, token)
    if token == "":
        assert got is None
    elif got is not InvalidArgument:
        # A canonical UUID, and re-encoding it gives a token naming the same page.
        assert got == str(uuid.UUID(got))
        assert paging.decode(paging.encode(got)) == got


@PROPERTY
@given(tokens | st.integers(-5, 1 << 64).map(lambda n: paging.encode(str(n))))
@example(b64(b'{"after":' + b"[" * 100_000 + b"}"))
@example(paging.encode("\uff11\uff12"))
@example(paging.encode("0"))
def test_a_position_token_is_a_positive_int64_or_invalid_argument(token):
    got = _decode(paging.decode_position, token)
    if token == "":
        assert got is None
    elif got is not InvalidArgument:
        assert isinstance(got, int) and 0 < got < 1 << 63
        assert paging.decode_position(paging.encode_position(got)) == got
        raw_after = json.loads(paging.base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        assert raw_after["after"] == str(got)  # ASCII digits, nothing folded


@PROPERTY
@given(st.one_of(st.integers(-(1 << 40), 1 << 40), st.sampled_from([0, 1, 499, 500, 501, -1])))
def test_page_size_is_in_range_or_invalid_argument(requested):
    if 0 <= requested <= paging.MAX_PAGE_SIZE:
        assert paging.page_size(requested) == (requested or paging.DEFAULT_PAGE_SIZE)
    else:
        with pytest.raises(InvalidArgument, match="page_size"):
            paging.page_size(requested)
