"""The encryption admin API's body (gateway/api/encryption.py) and the problem a service's
"tenant key unavailable" becomes (gateway/problems.py, REASONS): a key ARN or null is
admitted, anything else refused with Invalid, never another error; the reason's own type
and status reach the client, and only with FAILED_PRECONDITION."""

from __future__ import annotations

import json

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.gateway.api import encryption
from ontrackio.gateway.openapi import Invalid, validate
from ontrackio.gateway.problems import REASONS, problem_from_rpc_error
from tests.unit.gateway.strategies import PROPERTY

ARN = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_a_key_arn_or_null_is_admitted():
    assert validate({"key_arn": ARN}, encryption.NEW_KEY) == {"key_arn": ARN}
    assert validate({"key_arn": None}, encryption.NEW_KEY) == {"key_arn": None}


@pytest.mark.parametrize(
    "body, says",
    [
        ({}, "body.key_arn is required"),
        ({"key_arn": 7}, "must be of type string or null"),
        ({"key_arn": [ARN]}, "must be of type string or null"),
        ({"key_arn": {"arn": ARN}}, "must be of type string or null"),
        ({"key_arn": "a" * 2049}, "at most 2048"),
        ({"key_arn": ARN, "grant": True}, "unknown field"),
    ],
)
def test_anything_else_is_refused_naming_why(body, says):
    with pytest.raises(Invalid, match=says):
        validate(body, encryption.NEW_KEY)


@PROPERTY
@given(JSON)
def test_any_json_value_is_admitted_or_invalid_never_another_error(value):
    try:
        validate({"key_arn": value}, encryption.NEW_KEY)
    except Invalid:
        assert not (value is None or (isinstance(value, str) and len(value) <= 2048))


class Refusal(grpc.RpcError):
    def __init__(self, code, details, trailing=()):
        self._code, self._details, self._trailing = code, details, trailing

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


KEY_GONE = (("ontrack-reason", "tenant-key-unavailable"),)


def test_tenant_key_unavailable_is_a_503_of_its_own_type_with_retry_after():
    r = problem_from_rpc_error(
        Refusal(grpc.StatusCode.FAILED_PRECONDITION, "tenant key unavailable (disabled)", KEY_GONE)
    )
    body = json.loads(r.body)
    assert r.status_code == 503
    assert body["type"] == REASONS["tenant-key-unavailable"].type_
    assert body["title"] == "Tenant key unavailable"
    assert body["detail"] == "tenant key unavailable (disabled)"
    assert r.headers["retry-after"] == "30"


@pytest.mark.parametrize(
    "code, trailing",
    [
        (grpc.StatusCode.FAILED_PRECONDITION, ()),  # no reason: the code's own mapping
        (grpc.StatusCode.FAILED_PRECONDITION, (("ontrack-reason", "no-such-reason"),)),
        (grpc.StatusCode.INTERNAL, KEY_GONE),  # a reason only counts with its own code
    ],
)
def test_without_a_known_reason_and_code_the_status_is_the_codes(code, trailing):
    r = problem_from_rpc_error(Refusal(code, "x", trailing))
    assert json.loads(r.body)["type"] == "about:blank"
    assert r.status_code in (409, 502)
