"""Page sizes and opaque page tokens."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from ontrackio.core import paging
from ontrackio.core.errors import InvalidArgument


def token_of(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "requested, size",
    [(0, paging.DEFAULT_PAGE_SIZE), (1, 1), (paging.MAX_PAGE_SIZE, paging.MAX_PAGE_SIZE)],
)
def test_page_size_defaults_and_bounds(requested, size):
    assert paging.page_size(requested) == size


@pytest.mark.parametrize("requested", [-1, paging.MAX_PAGE_SIZE + 1])
def test_page_size_out_of_range_is_invalid_argument(requested):
    with pytest.raises(InvalidArgument, match="page_size"):
        paging.page_size(requested)


def test_token_round_trip():
    after = str(uuid.uuid4())
    token = paging.encode(after)
    assert "=" not in token
    assert paging.decode(token) == after


def test_empty_token_is_first_page():
    assert paging.decode("") is None


@pytest.mark.parametrize(
    "token",
    [
        "%%%",
        "not base64 at all!",
        "é",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        token_of("just a string"),
        token_of([1, 2]),
        token_of(5),
        token_of({"before": str(uuid.uuid4())}),
        token_of({"after": "not-a-uuid"}),
        token_of({"after": None}),
    ],
)
def test_forged_token_is_invalid_argument(token):
    with pytest.raises(InvalidArgument, match="page_token"):
        paging.decode(token)


@pytest.mark.parametrize("after", [5, ["x"], {"a": 1}])
def test_token_with_non_string_after_is_invalid_argument(after):
    with pytest.raises(InvalidArgument, match="page_token"):
        paging.decode(token_of({"after": after}))


def test_parse_id_normalises_uuid():
    value = uuid.uuid4()
    assert paging.parse_id(str(value).upper(), "asset_id") == str(value)


@pytest.mark.parametrize("value", ["", "nope", None, 5])
def test_parse_id_refuses_non_uuid_naming_the_field(value):
    with pytest.raises(InvalidArgument, match="asset_id must be a UUID"):
        paging.parse_id(value, "asset_id")
