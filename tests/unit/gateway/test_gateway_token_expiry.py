"""Token expiry is compared in UTC seconds whatever the process's local time zone.

The expiry arrives as a protobuf Timestamp; reading it through a naive datetime would apply the
local offset (a token valid for an hour would be expired east of UTC, an expired one still
valid west of it). Each test runs under a POSIX TZ that is not UTC (no tzdata needed).
"""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace

import pytest

from ontrackio.gateway.auth.bearer import Authenticator, Failure, Principal, record_from_pb
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.identity import access_tokens as tokens
from ontrackio.identity.v1 import access_pb2 as apb

KEY = b"e" * 32
# POSIX TZ strings: the offset is hours *west* of UTC, so "-07" is seven hours east.
ZONES = {"east": "OTE-07", "west": "OTW+09", "half_hour": "OTH-05:30"}


@pytest.fixture(params=sorted(ZONES))
def local_zone(request):
    saved = os.environ.get("TZ")
    os.environ["TZ"] = ZONES[request.param]
    time.tzset()
    assert time.timezone != 0, "the TZ override did not take effect"
    try:
        yield request.param
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def _pb_record(issued: tokens.Issued, expires_at: float) -> apb.TokenRecord:
    token = apb.Token(id=issued.token_id, scopes=["api:read"])
    token.expires_at.FromNanoseconds(int(expires_at * 1e9))
    return apb.TokenRecord(token=token, tenant="acme", secret_hash=issued.secret_hash)


class _Identity:
    """Answers LookupToken with `record`; notes the TouchToken that records an accepted use."""

    def __init__(self, record: apb.TokenRecord) -> None:
        self.record = record
        self.access = SimpleNamespace(LookupToken="lookup", TouchToken="touch")
        self.touched = asyncio.Event()

    async def call(self, method, request, *, tenant=None, actor=None, timeout=None):
        if method == "touch":
            self.touched.set()
            return apb.TouchTokenResponse()
        return self.record


def _authenticate(record: apb.TokenRecord, bearer: str) -> Principal | Failure:
    """Authenticate once. An accepted token's use is recorded by a call made in the
    background: waited for here (the fake identity sees it), so the loop is not closed
    under it."""

    async def scenario():
        identity = _Identity(record)
        auth = Authenticator(
            identity,
            KEY,
            TTLCache(5, negative_ttl=5),
            lookup_limiter=TokenBucketLimiter(5, 5),
            touch_seconds=60,
        )
        result = await auth.authenticate(f"Bearer {bearer}", "acme", None)
        if isinstance(result, Principal):
            await asyncio.wait_for(identity.touched.wait(), timeout=5)
        return result

    return asyncio.run(scenario())


def test_expiry_is_the_timestamp_in_posix_seconds(local_zone):
    issued = tokens.issue(KEY)
    for instant in (1_900_000_000.0, 1_900_000_000.25, 86_400.0):
        assert record_from_pb(_pb_record(issued, instant)).expires_at == pytest.approx(
            instant, abs=1e-6
        )


def test_a_token_valid_for_an_hour_is_accepted(local_zone):
    issued = tokens.issue(KEY)
    result = _authenticate(_pb_record(issued, time.time() + 3600), issued.bearer)
    assert isinstance(result, Principal), result


def test_a_token_expired_an_hour_ago_is_refused(local_zone):
    issued = tokens.issue(KEY)
    result = _authenticate(_pb_record(issued, time.time() - 3600), issued.bearer)
    assert result is Failure.EXPIRED
