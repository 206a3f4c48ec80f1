"""Properties of bearer-token splitting and the Authorization header check: total, exact
(nothing stripped or folded), and no malformed or forged token ever reaches identity."""

from __future__ import annotations

import asyncio
import string
from types import SimpleNamespace

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.gateway.auth.bearer import Authenticator, Failure
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.identity import access_tokens as tokens
from tests.unit.gateway.strategies import PROPERTY, any_text, latin1_text

KEY = b"p" * 32
ISSUED = tokens.issue(KEY)
_ALPHABET = set(string.ascii_letters + string.digits + "_-")


@PROPERTY
@given(st.one_of(any_text, latin1_text, st.just(ISSUED.bearer)))
def test_split_is_total_and_exact(text):
    parts = tokens.split_bearer(text)  # never raises
    if parts is None:
        return
    token_id, secret = parts
    assert f"{tokens.PREFIX}{token_id}_{secret}" == text
    assert text.isascii() and set(text) <= _ALPHABET


@PROPERTY
@given(st.data())
def test_issued_tokens_split_back(data):
    issued = tokens.issue(KEY)
    secret = issued.bearer[len(tokens.PREFIX) + len(issued.token_id) + 1 :]
    assert tokens.split_bearer(issued.bearer) == (issued.token_id, secret)
    # Any single character swapped for one outside the alphabet breaks it.
    at = data.draw(st.integers(0, len(issued.bearer) - 1))
    bad = data.draw(st.characters().filter(lambda c: c not in _ALPHABET))
    assert tokens.split_bearer(issued.bearer[:at] + bad + issued.bearer[at + 1 :]) is None


class _Identity:
    def __init__(self) -> None:
        self.calls = 0
        self.access = SimpleNamespace(LookupToken="lookup", TouchToken="touch")

    async def call(self, method, request, *, tenant=None, actor=None, timeout=None):
        self.calls += 1
        raise AssertionError("a malformed or forged token reached identity")


def _authenticate(header: str | None):
    identity = _Identity()
    auth = Authenticator(
        identity,
        KEY,
        TTLCache(5, negative_ttl=5),
        lookup_limiter=TokenBucketLimiter(5, 5),
        touch_seconds=60,
    )
    return asyncio.run(auth.authenticate(header, "acme", None)), identity.calls


header_text = st.one_of(
    any_text,
    latin1_text,
    st.tuples(st.sampled_from(["Bearer ", "bearer ", "BEARER  ", "Basic ", "Bearer\t", ""]),
              st.one_of(any_text, st.just(tokens.PREFIX + "0" * 24 + "_" + "A" * 43))).map("".join),
)  # fmt: skip


@PROPERTY
@given(header_text)
@example("Bearer otk_" + "0" * 24 + "_" + "A" * 43)
@example("Bearer\u00a0" + ISSUED.bearer)
def test_malformed_and_forged_tokens_are_refused_without_a_lookup(header):
    result, calls = _authenticate(header)
    assert result in (Failure.MISSING, Failure.MALFORMED, Failure.FORGED)
    assert calls == 0
