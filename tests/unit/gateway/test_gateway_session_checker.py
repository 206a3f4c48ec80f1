"""The gateway's session checker against a fake identity: cheap refusals, the cache, idle
expiry moved on by use, and forgetting on revocation. No sockets."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ontrackio.gateway.auth.session import SessionChecker, SessionPrincipal, session_cookie
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.identity.sessions import rules
from ontrackio.identity.v1 import sessions_pb2 as spb

KEY = b"k" * 32


def ts(seconds: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int(seconds * 1e9))
    return t


class FakeIdentity:
    """LookupSession / TouchSession over a dict of records; counts calls."""

    def __init__(self):
        self.records: dict[str, spb.SessionRecord] = {}
        self.calls: list[str] = []
        self.sessions = SimpleNamespace(LookupSession="lookup", TouchSession="touch")

    def add(self, *, tenant="acme", roles=("member",), idle=3600.0, absolute=7200.0, **kw):
        issued = rules.issue(KEY)
        now = time.time()
        self.records[issued.token_id] = spb.SessionRecord(
            id=issued.token_id,
            tenant=tenant,
            user_id="u-" + issued.token_id[:4],
            roles=list(roles),
            secret_hash=issued.secret_hash,
            idle_expires_at=ts(now + idle),
            expires_at=ts(now + absolute),
            user_active=kw.get("active", True),
            method="password",
            mfa_source="none",
        )
        if kw.get("revoked"):
            self.records[issued.token_id].revoked_at.CopyFrom(ts(now))
        return issued

    async def call(self, method, request, *, tenant=None, **kw):
        self.calls.append(method)
        record = self.records.get(request.id)
        if record is None:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "no"
            )
        if method == "touch":
            record.idle_expires_at.CopyFrom(ts(time.time() + 3600))
        return record


def checker(identity, *, burst=100):
    return SessionChecker(
        identity,
        KEY,
        TTLCache(60),
        lookup_limiter=TokenBucketLimiter(0.001, burst),
        touch_seconds=60,
    )


def run(coro):
    return asyncio.run(coro)


def test_a_live_session_is_its_user_with_roles():
    identity = FakeIdentity()
    issued = identity.add(roles=("admin",))

    async def scenario():
        c = checker(identity)
        p = await c.authenticate(issued.bearer, "acme", None)
        await asyncio.sleep(0)  # the background touch
        return p

    p = run(scenario())
    assert isinstance(p, SessionPrincipal) and p.roles == {"admin"} and "admin" in p.scopes
    assert p.actor.startswith("user:") and p.session_id == issued.token_id


def test_forged_malformed_and_wrong_secret_are_refused_cheaply():
    identity = FakeIdentity()
    issued = identity.add()
    forged = "ots_" + "0" * 24 + issued.bearer[28:]
    wrong_secret = issued.bearer[:-3] + ("AAA" if not issued.bearer.endswith("AAA") else "BBB")

    async def scenario():
        c = checker(identity)
        return [await c.authenticate(v, "acme", None) for v in ("x", forged, wrong_secret)]

    assert run(scenario()) == [None, None, None]
    assert identity.calls == ["lookup"]  # only the genuine id was looked up


def test_another_tenants_session_revoked_and_inactive_are_refused():
    identity = FakeIdentity()
    other = identity.add(tenant="globex")
    revoked = identity.add(revoked=True)
    inactive = identity.add(active=False)
    old = identity.add(absolute=-1)

    async def scenario():
        c = checker(identity)
        return [
            await c.authenticate(i.bearer, "acme", None) for i in (other, revoked, inactive, old)
        ]

    assert run(scenario()) == [None, None, None, None]


def test_an_idle_looking_record_is_asked_again_and_use_moves_it_on():
    identity = FakeIdentity()
    issued = identity.add(idle=-1)

    async def scenario():
        c = checker(identity)
        first = await c.authenticate(issued.bearer, "acme", None)
        # another worker touched it meanwhile: identity's record is live again
        identity.records[issued.token_id].idle_expires_at.CopyFrom(ts(time.time() + 60))
        second = await c.authenticate(issued.bearer, "acme", None)
        await asyncio.sleep(0.01)
        return first, second, c.cache.peek(("acme", issued.token_id))

    first, second, cached = run(scenario())
    assert first is None and second is not None
    assert cached.idle_expires_at > time.time() + 3000  # the touch's reply replaced it


def test_forget_drops_sessions_by_id_and_by_user():
    identity = FakeIdentity()
    a, b = identity.add(), identity.add()

    async def scenario():
        c = checker(identity)
        for i in (a, b):
            assert await c.authenticate(i.bearer, "acme", None) is not None
        c.forget("acme", [a.token_id])
        gone_a = not c.cache.cached(("acme", a.token_id))
        user_b = identity.records[b.token_id].user_id
        c.forget("acme", [], user_b)
        return gone_a, not c.cache.cached(("acme", b.token_id))

    assert run(scenario()) == (True, True)


def test_lookups_of_unknown_ids_are_budgeted_per_address():
    identity = FakeIdentity()
    unknown = [rules.issue(KEY).bearer for _ in range(5)]

    async def scenario():
        c = checker(identity, burst=2)
        return [await c.authenticate(v, "acme", "192.0.2.1") for v in unknown]

    assert run(scenario()) == [None] * 5
    assert identity.calls.count("lookup") == 2


def test_the_cookie_is_read_once_and_only_by_its_exact_name():
    from ontrackio.gateway.auth.session import SESSION_COOKIE

    assert session_cookie([f"a=1; {SESSION_COOKIE}=v"]) == "v"
    assert session_cookie(["ontrack_session=v"]) is None
    assert session_cookie([f"{SESSION_COOKIE}=v", f"{SESSION_COOKIE}=w"]) is None
