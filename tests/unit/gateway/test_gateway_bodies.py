"""Property tests of the body and cookie parsers at the edge: hostile input is refused with a
400 (InvalidBody), never another exception; honest input round-trips."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ontrackio.gateway.api.bodies import InvalidBody, parse_form
from ontrackio.gateway.auth.session import SESSION_COOKIE, session_cookie

ODD = st.lists(
    st.sampled_from(["a", "=", "&", ";", "%", "+", " ", "\x00", "\ud800", "Ａ", "é", "😀", "%00"])
    | st.characters(),
    max_size=10,
).map("".join)
SAFE = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=10)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80) | ODD.map(lambda t: t.encode("utf-8", "surrogatepass")))
@example(b"a=%ed%a0%80")
@example(b"a=%00")
@example(b"%ff=1")
@example(b"&" * 100)
def test_hostile_forms_are_refused_cleanly(raw):
    try:
        form = parse_form(raw, max_fields=8)
    except InvalidBody as refused:
        assert refused.status_code == 400 and refused.detail
        refused.detail.encode("utf-8")  # the message itself is always encodable
        return
    assert len(form) <= 8
    for name, value in form.items():
        for text in (name, value):
            assert "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(SAFE, SAFE, max_size=8))
def test_honest_forms_round_trip(fields):
    raw = urlencode(fields).encode("ascii")
    if not raw:
        return
    assert parse_form(raw, max_fields=8) == fields


@settings(max_examples=500, deadline=None)
@given(st.lists(ODD, max_size=3))
def test_hostile_cookie_headers_never_crash(headers):
    value = session_cookie(headers)
    assert value is None or (value and ";" not in value)


@given(st.text(st.sampled_from("abcdefghij0123456789-_"), min_size=1, max_size=40), ODD)
def test_the_session_cookie_is_found_among_others(session_id, other):
    other = other.replace(";", "").replace(SESSION_COOKIE, "")
    header = f"theme={other}; {SESSION_COOKIE}={session_id}; lang=de"
    assert session_cookie([header]) == session_id
    assert session_cookie([header, f"{SESSION_COOKIE}={session_id}"]) is None  # twice: refused


@pytest.mark.parametrize("junk", ["\xa0", "\x85", "\u3000", "\u200b", "\ufeff", "\x0b", "\x1f"])
def test_a_name_a_browser_reads_as_unprefixed_is_not_the_host_only_cookie(junk):
    """A sibling host may set "\xa0__Host-…" (no prefix to a browser) with Domain=; only
    spaces and tabs surround a cookie pair (RFC 6265)."""
    assert session_cookie([f"{junk}{SESSION_COOKIE}=planted"]) is None
    assert session_cookie([f"{SESSION_COOKIE}{junk}=planted"]) is None
    assert session_cookie([f"a=1;{junk}{SESSION_COOKIE}=planted; {SESSION_COOKIE}=mine"]) == "mine"
    assert session_cookie([f" \t{SESSION_COOKIE}=mine\t "]) == "mine"


@settings(max_examples=500, deadline=None)
@given(st.lists(ODD, max_size=3), st.sampled_from([SESSION_COOKIE, "__Host-ontrack_oidc"]))
def test_a_cookie_is_found_only_under_its_exact_ascii_name(headers, name):
    from ontrackio.gateway.auth.cookies import cookie_value

    value = cookie_value(headers, name)
    pairs = [p.strip(" \t").partition("=") for h in headers for p in h.split(";") if "=" in p]
    exact = [v.strip(" \t") for k, _, v in pairs if k == name]
    assert value == (exact[0] if len(exact) == 1 else None)
