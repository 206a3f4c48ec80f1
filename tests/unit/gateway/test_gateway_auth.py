"""Token format, the TTL cache and the authenticator against a fake identity: no sockets."""

import asyncio
import time
from types import SimpleNamespace

import grpc
import pytest

from ontrackio.gateway.api.catalogue import OPERATIONS
from ontrackio.gateway.auth.bearer import Authenticator, Failure, Principal
from ontrackio.gateway.openapi import Invalid, validate
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.identity import access_tokens as tokens
from ontrackio.identity.v1 import access_pb2 as apb

KEY = b"k" * 32


def test_issued_tokens_parse_and_verify():
    issued = tokens.issue(KEY)
    token_id, secret = tokens.split_bearer(issued.bearer)
    assert token_id == issued.token_id
    assert tokens.id_is_genuine(KEY, token_id)
    assert not tokens.id_is_genuine(b"other", token_id)
    assert tokens.secret_matches(KEY, token_id, secret, issued.secret_hash)
    assert not tokens.secret_matches(KEY, token_id, secret[:-1] + "x", issued.secret_hash)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "otk_",
        "Bearer x",
        "otk_" + "g" * 24 + "_" + "a" * 43,
        "otk_" + "a" * 24 + "-" + "a" * 43,
        "xtk_" + "a" * 24 + "_" + "a" * 43,
        "otk_" + "a" * 24 + "_" + "a" * 42 + "!",
    ],
)
def test_malformed_tokens_are_refused_without_a_key(bad):
    assert tokens.split_bearer(bad) is None


def test_cidrs_are_normalised_and_invalid_ones_named():
    assert tokens.validate_cidrs(["10.0.0.0/8", "::ffff:192.0.2.0/120", "2001:db8::1"]) == [
        "10.0.0.0/8",
        "192.0.2.0/24",
        "2001:db8::1/128",
    ]
    with pytest.raises(tokens.InvalidToken, match="'10.0.0.1/8'.*'nope'"):
        tokens.validate_cidrs(["10.0.0.1/8", "nope", "10.0.0.0/8"])
    assert tokens.address_allowed("::ffff:10.1.2.3", ["10.0.0.0/8"])
    assert not tokens.address_allowed("11.0.0.1", ["10.0.0.0/8"])


def test_scopes_must_be_known():
    assert tokens.validate_scopes(["admin", "api:read", "admin"]) == ["api:read", "admin"]
    with pytest.raises(tokens.InvalidToken, match="'root'"):
        tokens.validate_scopes(["root"])


def test_cache_single_flight_negative_answers_and_invalidation():
    """Loads are held until the test lets them finish, so every caller below has asked
    while the load was in flight (the event loop runs ready tasks in order: the 19 others
    reach the cache before the test resumes from `started`)."""

    async def scenario():
        cache = TTLCache(10, negative_ttl=10)
        calls = []
        started, finish = asyncio.Event(), asyncio.Event()

        async def load():
            calls.append(1)
            started.set()
            await finish.wait()
            return None

        getters = [asyncio.create_task(cache.get("k", load)) for _ in range(20)]
        await started.wait()
        assert not any(g.done() for g in getters)  # all waiting on the one load
        finish.set()
        assert await asyncio.gather(*getters) == [None] * 20
        assert len(calls) == 1 and cache.cached("k")
        # An invalidation during a load keeps the load's answer out of the cache.
        started.clear()
        finish.clear()
        slow = asyncio.create_task(cache.get("j", load))
        await started.wait()
        cache.invalidate("j")
        finish.set()
        await slow
        assert len(calls) == 2 and not cache.cached("j")

    asyncio.run(scenario())


def test_cache_is_bounded():
    async def scenario():
        cache = TTLCache(10, max_entries=3)
        for i in range(10):
            await cache.get(i, lambda i=i: asyncio.sleep(0, i))
        assert len(cache) == 3

    asyncio.run(scenario())


class FakeUpstream:
    """LookupToken/TouchToken answered from a dict, counting the calls."""

    def __init__(self, records):
        self.records = records
        self.lookups = 0
        self.touches = 0
        self.touched = asyncio.Event()  # set by the first TouchToken (made in the background)
        self.access = SimpleNamespace(LookupToken="lookup", TouchToken="touch")

    async def call(self, method, request, *, tenant=None, actor=None, timeout=None):
        if method == "touch":
            self.touches += 1
            self.touched.set()
            return apb.TouchTokenResponse()
        self.lookups += 1
        record = self.records.get((tenant, request.id))
        if record is None:
            raise _NotFound()
        return record


class _NotFound(grpc.aio.AioRpcError):
    def __init__(self):
        super().__init__(grpc.StatusCode.NOT_FOUND, None, None, "token not found")


def _record(issued, tenant="acme", scopes=("api:read",), cidrs=(), expires=None, revoked=False):
    t = apb.Token(id=issued.token_id, scopes=list(scopes), cidrs=list(cidrs))
    if expires is not None:
        t.expires_at.FromSeconds(int(expires))
    if revoked:
        t.revoked_at.GetCurrentTime()
    return apb.TokenRecord(token=t, tenant=tenant, secret_hash=issued.secret_hash)


def _auth(records, **kw):
    up = FakeUpstream(records)
    auth = Authenticator(
        up,
        KEY,
        TTLCache(5, negative_ttl=5),
        lookup_limiter=TokenBucketLimiter(5, 5),
        touch_seconds=60,
        **kw,
    )
    return auth, up


def test_authenticator_accepts_a_valid_token_and_caches_it():
    from ipaddress import ip_address

    good = tokens.issue(KEY)

    async def scenario():
        auth, up = _auth({("acme", good.token_id): _record(good)})
        for _ in range(5):
            p = await auth.authenticate(f"Bearer {good.bearer}", "acme", ip_address("192.0.2.1"))
            assert isinstance(p, Principal) and "api:read" in p.scopes
        # Touches run as background tasks, created during the requests above: by the time
        # the first has run and the test resumes, any other would have run too.
        await asyncio.wait_for(up.touched.wait(), 5)
        assert up.lookups == 1 and up.touches == 1

    asyncio.run(scenario())


def test_authenticator_failures():
    from ipaddress import ip_address

    good, revoked, expired, fenced = (tokens.issue(KEY) for _ in range(4))
    records = {
        ("acme", good.token_id): _record(good),
        ("acme", revoked.token_id): _record(revoked, revoked=True),
        ("acme", expired.token_id): _record(expired, expires=time.time() - 5),
        ("acme", fenced.token_id): _record(fenced, cidrs=["10.0.0.0/8"]),
    }
    ip = ip_address("192.0.2.1")

    async def scenario():
        auth, up = _auth(records)
        cases = {
            None: Failure.MISSING,
            "Basic abc": Failure.MALFORMED,
            "Bearer nope": Failure.MALFORMED,
            f"Bearer otk_{'0' * 24}_{'a' * 43}": Failure.FORGED,
            f"Bearer {good.bearer[:-1]}{'B' if good.bearer[-1] != 'B' else 'C'}": Failure.SECRET,
            f"Bearer {revoked.bearer}": Failure.REVOKED,
            f"Bearer {expired.bearer}": Failure.EXPIRED,
            f"Bearer {fenced.bearer}": Failure.ADDRESS,
        }
        for header, expected in cases.items():
            assert await auth.authenticate(header, "acme", ip) == expected, header
        assert await auth.authenticate(f"Bearer {good.bearer}", "other", ip) == Failure.UNKNOWN
        lookups = up.lookups
        for _ in range(50):  # forged ids never cost a look-up
            await auth.authenticate(f"Bearer otk_{'1' * 24}_{'a' * 43}", "acme", ip)
        assert up.lookups == lookups

    asyncio.run(scenario())


def test_lookups_per_address_are_budgeted():
    from ipaddress import ip_address

    unknown = [tokens.issue(KEY) for _ in range(10)]

    async def scenario():
        auth, up = _auth({})
        seen = [
            await auth.authenticate(f"Bearer {t.bearer}", "acme", ip_address("192.0.2.9"))
            for t in unknown
        ]
        assert seen.count(Failure.THROTTLED) == 5 and up.lookups == 5

    asyncio.run(scenario())


def test_request_schemas_are_enforced():
    body = next(op for op in OPERATIONS if op.operation_id == "createAsset").body.schema
    validate({"name": "laptop", "kind": "hardware"}, body)
    for bad in (
        {"name": "x"},
        {"name": "x", "kind": "boat"},
        {"name": " ", "kind": "saas"},
        {"name": "x", "kind": "saas", "extra": 1},
        [],
        {"name": 1, "kind": "saas"},
    ):
        with pytest.raises(Invalid):
            validate(bad, body)
