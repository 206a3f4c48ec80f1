"""Audit rules without a database: the canonical encoding, what an entry may hold, the
refusal intake and its rate limit, the ListAudit filters and the page cursor."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.core import paging
from ontrackio.core.audit import chain, origin, refusals
from ontrackio.core.audit import log as audit_log
from ontrackio.core.errors import InvalidArgument
from ontrackio.identity.audit_api import filters_of
from ontrackio.identity.errors import InvalidAuditQuery
from ontrackio.identity.v1 import audit_pb2 as pb

HOSTILE = st.text(alphabet=st.characters(blacklist_categories=()), max_size=80) | st.sampled_from(
    ["\x00", "\ud800", "ＡＤＭＩＮ", "%252e%252e", "%00", "e\u0301", "9" * 400]
)
ROW = (7, 3, 1_700_000_000_123_456, "token:x", "token.create", "done", "", None, "{}", "", "", "")


def test_encoding_is_length_prefixed_utf8_with_null_as_tilde():
    assert chain.encode(ROW) == (
        b"v11:71:316:17000000001234567:token:x12:token.create4:done0:~2:{}0:0:0:"
    )
    row = (1, 1, 0, "é", "a.b", "done", "", None, None, "", "", "")
    assert b"2:\xc3\xa9" in chain.encode(row)  # the byte length, not the character count


def test_chain_links_sha256_of_previous_and_encoding():
    first = chain.link(chain.GENESIS, ROW)
    assert first == hashlib.sha256(bytes(32) + chain.encode(ROW)).digest()
    assert chain.link(first, ROW) != first


def test_time_is_exact_microseconds():
    at = datetime(2026, 12, 1, 18, 0, 0, 123457, tzinfo=UTC)
    assert chain.micros(at) == 1796148000123457
    as_int = (7, 3, chain.micros(at), *ROW[3:])
    assert chain.encode((7, 3, at, *ROW[3:])) == chain.encode(as_int)
    assert chain.micros(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1


@given(HOSTILE, HOSTILE, HOSTILE)
def test_prepared_text_is_storable_and_bounded(actor, target, request_id):
    args, personal = audit_log.prepare(
        audit_log.Entry(
            actor, "token.create", target, origin=audit_log.Origin(request_id, target, actor)
        )
    )
    for value in (*args, *personal.values):
        if value is not None:
            assert "\x00" not in value
            value.encode("utf-8")  # no lone surrogates left
    assert len(args[3]) <= 200 and len(args[6]) <= 128 and len(args[7]) <= 64
    assert audit_log.OPAQUE_RE.match(args[0])  # the stored actor is always an opaque id


@given(st.recursive(st.none() | HOSTILE | st.integers(), lambda c: st.lists(c, max_size=3)))
def test_old_and_new_values_are_ascii_json_that_round_trips(value):
    text = chain.canonical_json({"v": value})
    assert text.isascii() and json.loads(text) == {"v": value}


@pytest.mark.parametrize(
    "actor,kept",
    [
        ("system", True),
        ("token:" + "0f" * 12, True),
        ("user:0b5f0c8e-6a7b-4c1d-9e2f-3a4b5c6d7e8f", True),
        ("cli:root", False),
        ("alice@example.eu", False),
        ("token:" + "0F" * 12, False),
        ("ｓｙｓｔｅｍ", False),  # full-width look-alike
        ("system\n", False),
    ],
)
def test_only_opaque_actors_are_stored_as_they_are(actor, kept):
    args, personal = audit_log.prepare(audit_log.Entry(actor, "a.b"))
    assert (args[0] == actor) is kept
    assert (personal.values == [actor]) is (not kept)


def test_personal_values_anywhere_become_references():
    args, personal = audit_log.prepare(
        audit_log.Entry(
            "system",
            "user.create",
            audit_log.Personal("email", "a@b.eu"),
            None,
            {"emails": [audit_log.Personal("email", "c@d.eu")]},
        )
    )
    assert args[3].startswith("pv:") and "c@d.eu" not in args[5]
    assert personal.values == ["a@b.eu", "c@d.eu"] and personal.kinds == ["email", "email"]


@pytest.mark.parametrize(
    "action", ["", "token", "Token.create", "token.", "a.b c", "a" * 70 + ".b"]
)
def test_bad_actions_and_outcomes_are_refused(action):
    with pytest.raises(ValueError):
        audit_log.prepare(audit_log.Entry("system", action))
    with pytest.raises(ValueError):
        audit_log.prepare(audit_log.Entry("system", "a.b", outcome="maybe"))


def test_origin_from_metadata_prefers_the_edge_and_reads_the_traceparent():
    o = origin.from_metadata(
        {
            origin.REQUEST_ID_KEY: "r" * 500,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
        "192.0.2.1",
    )
    assert o.request_id == "r" * 128 and o.client_address == "192.0.2.1"
    assert o.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert origin.from_metadata({"traceparent": "garbage"}).trace_id == ""
    with origin.bound(o):
        assert origin.current() is o
    assert origin.current().request_id == ""


def test_refusals_accept_known_actions_and_token_actors_only():
    e = refusals.entry(
        "scope.denied", "token:" + "ab" * 12, "GET /x", "no admin", audit_log.Origin()
    )
    assert e.outcome == "refused" and e.new == {"reason": "no admin"}
    assert refusals.entry("allowlist.denied", "", "", "", audit_log.Origin()).actor == "anonymous"
    with pytest.raises(refusals.BadRefusal):
        refusals.entry("token.create", "", "", "", audit_log.Origin())
    with pytest.raises(refusals.BadRefusal):
        refusals.entry("scope.denied", "alice@example.eu", "", "", audit_log.Origin())


def test_refusal_rate_limit_is_per_tenant_and_refills():
    now = [0.0]
    limit = refusals.TenantRateLimit(2.0, 3, clock=lambda: now[0])
    assert [limit.allow("a") for _ in range(5)] == [True, True, True, False, False]
    assert limit.allow("b")
    now[0] += 0.5
    assert limit.allow("a") and not limit.allow("a")


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_position_cursor_round_trips():
    assert paging.decode_position(paging.encode_position(12345)) == 12345
    assert paging.decode_position("") is None


@given(st.one_of(HOSTILE, st.builds(_token, st.dictionaries(HOSTILE, HOSTILE | st.integers()))))
def test_forged_position_cursors_are_invalid_arguments(token):
    try:
        position = paging.decode_position(token)
    except InvalidArgument:
        return
    assert position is None or 0 < position < 1 << 63


@pytest.mark.parametrize("after", ["-1", "0", "１２", "1e3", str(1 << 63), 5, None, " 7"])
def test_odd_positions_are_refused(after):
    with pytest.raises(InvalidArgument):
        paging.decode_position(_token({"after": after}))


def test_list_filters_are_validated():
    since = datetime(2026, 1, 1, tzinfo=UTC)
    req = pb.ListAuditRequest(actor="token:x", action="token.create")
    req.since.FromDatetime(since)
    req.until.FromDatetime(since + timedelta(days=1))
    f = filters_of(req)
    assert (f.actor, f.action, f.since) == ("token:x", "token.create", since)
    for bad in (
        pb.ListAuditRequest(action="DROP TABLE"),
        pb.ListAuditRequest(actor="x" * 400),
        pb.ListAuditRequest(actor="a\x00b"),
    ):
        with pytest.raises(InvalidAuditQuery):
            filters_of(bad)
    backwards = pb.ListAuditRequest()
    backwards.since.FromDatetime(since)
    backwards.until.FromDatetime(since)
    with pytest.raises(InvalidAuditQuery):
        filters_of(backwards)
    huge = pb.ListAuditRequest()
    huge.since.seconds = 1 << 62
    with pytest.raises(InvalidAuditQuery):
        filters_of(huge)
