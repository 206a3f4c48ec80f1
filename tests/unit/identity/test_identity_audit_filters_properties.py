"""Properties of identity's ListAudit filter validation (``audit_api.filters_of``): a request
is accepted exactly when an independent reading of the rule accepts it, accepted filters are
the request's own values, and a refusal is always ``InvalidAuditQuery`` (INVALID_ARGUMENT).

The rule, read from the docstrings and the API reference: ``actor`` and ``action`` at most
320 characters and no NUL; a non-empty ``action`` is ``noun.verb`` (two or more dot-separated
parts, each an ASCII lower-case letter then lower-case letters, digits or ``_``); ``since``
and ``until`` valid protobuf Timestamps (seconds within years 1..9999, nanos 0..999999999);
``since`` before ``until`` at the microsecond precision the trail keeps. Requests come from
the wire too: any bytes that parse as a ListAuditRequest (invalid UTF-8 does not parse).
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

from google.protobuf.message import DecodeError
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.identity.audit_api import filters_of
from ontrackio.identity.errors import InvalidAuditQuery
from ontrackio.identity.v1 import audit_pb2 as pb
from tests.unit.gateway.strategies import PROPERTY

LIMIT = 320
MIN_SECONDS, MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01, 9999-12-31T23:59:59
_HEAD = set(string.ascii_lowercase)
_TAIL = _HEAD | set(string.digits) | {"_"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def is_action(text: str) -> bool:
    parts = text.split(".")
    return len(parts) >= 2 and all(p and p[0] in _HEAD and set(p) <= _TAIL for p in parts)


def micros(t) -> int:
    return t.seconds * 10**6 + t.nanos // 1000


def accepted(req: pb.ListAuditRequest) -> bool:
    for value in (req.actor, req.action):
        if len(value) > LIMIT or "\x00" in value:
            return False
    if req.action and not is_action(req.action):
        return False
    times = [getattr(req, n) for n in ("since", "until") if req.HasField(n)]
    if any(not (MIN_SECONDS <= t.seconds <= MAX_SECONDS and 0 <= t.nanos < 10**9) for t in times):
        return False
    if req.HasField("since") and req.HasField("until"):
        return micros(req.since) < micros(req.until)
    return True


def check(req: pb.ListAuditRequest) -> None:
    try:
        f = filters_of(req)
    except InvalidAuditQuery:
        assert not accepted(req), req
        return
    assert accepted(req), req
    assert (f.actor, f.action) == (req.actor, req.action)
    for name in ("since", "until"):
        want = EPOCH + timedelta(microseconds=micros(getattr(req, name)))
        assert getattr(f, name) == (want if req.HasField(name) else None), name


# Text a proto string can hold (no lone surrogates), with the atoms that matter here.
ATOMS = [
    "token.create", "token", ".", "..", "a.b", "a_1.b_2", "A.b", "1a.b", "_a.b", "a.", ".a",
    "a..b", "a.b\n", "a.b\x00", "\x00", "\uff54oken.create", "\u212a", "\u0131", "\u00e9",
    "\u202e", "\u200b", "\ufeff", " ", "-", "a-b.c", "token.create ", "pv:", "token:",
]  # fmt: skip
filter_text = st.one_of(
    st.lists(st.one_of(st.sampled_from(ATOMS), st.text(max_size=6)), max_size=6).map("".join),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    st.builds(  # around the length limit
        lambda c, n: c * n,
        st.sampled_from(["a", ".", "\u00e9", "\U0001f600", "a.b"]),
        st.integers(LIMIT - 3, LIMIT + 3),
    ),
)
seconds = st.one_of(
    st.integers(MIN_SECONDS - 2, MIN_SECONDS + 2),
    st.integers(MAX_SECONDS - 2, MAX_SECONDS + 2),
    st.integers(0, 2_000_000_000),
    st.integers(-(2**63), 2**63 - 1),
)
nanos = st.one_of(
    st.sampled_from([0, 999, 1000, 999_999, 999_999_999, 10**9, -1]),
    st.integers(0, 10**9 - 1),
    st.integers(-(2**31), 2**31 - 1),
)
stamps = st.one_of(st.none(), st.tuples(seconds, nanos))


def request(actor: str, action: str, since, until) -> pb.ListAuditRequest:
    req = pb.ListAuditRequest(actor=actor, action=action)
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            getattr(req, name).seconds, getattr(req, name).nanos = value
    return req


@PROPERTY
@given(filter_text, filter_text, stamps, stamps)
@example("token:x", "token.create", (1767225600, 0), (1767312000, 0))
@example("", "token.create\n", None, None)  # a trailing newline is not noun.verb
@example("x" * LIMIT, "", None, None)
@example("x" * (LIMIT + 1), "", None, None)
@example("", "", (5, 500), (5, 900))  # the same microsecond: an empty range
@example("", "", (MAX_SECONDS, 999_999_999), None)
@example("", "", (MIN_SECONDS - 1, 0), None)
@example("", "", (0, -1), None)
def test_filters_are_accepted_exactly_by_the_rule(actor, action, since, until):
    check(request(actor, action, since, until))


def _field(number: int, payload: bytes) -> bytes:
    tag, size, out = (number << 3) | 2, len(payload), b""
    while True:
        out += bytes([(size & 0x7F) | (0x80 if size > 0x7F else 0)])
        size >>= 7
        if not size:
            return bytes([tag]) + out + payload


raw_strings = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xed\xa0\x80", b"\xc0\xae", b"\xc0\x80", b"\xff", b"a.b\x00"]),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from([1, 2]), raw_strings), max_size=4))
def test_requests_from_the_wire_are_refused_only_as_invalid_queries(fields):
    wire = b"".join(_field(number, payload) for number, payload in fields)
    try:
        req = pb.ListAuditRequest.FromString(wire)
    except DecodeError:  # invalid UTF-8: the server's deserialiser refuses it, not filters_of
        return
    check(req)


def test_a_huge_filter_is_refused():
    for name in ("actor", "action"):
        req = pb.ListAuditRequest(**{name: "a" * 1_000_000})
        try:
            filters_of(req)
        except InvalidAuditQuery:
            continue
        raise AssertionError(f"a million-character {name} was accepted")
