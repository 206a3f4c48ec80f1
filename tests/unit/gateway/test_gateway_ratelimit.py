from ipaddress import ip_address

from starlette.responses import PlainTextResponse

from ontrackio.gateway.ratelimit import (
    RateLimitMiddleware,
    TokenBucketLimiter,
    client_ip_key,
    token_id_key,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refuse_then_refill():
    clock = Clock()
    limiter = TokenBucketLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.hit("k").allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("k").retry_after == 1
    clock.now += 0.5
    assert limiter.hit("k").allowed
    assert limiter.hit("other").allowed  # independent key still has its burst


def test_retry_after_is_whole_seconds_and_at_least_one():
    clock = Clock()
    limiter = TokenBucketLimiter(rate=0.1, burst=1, clock=clock)
    limiter.hit("k")
    decision = limiter.hit("k")
    assert not decision.allowed
    assert decision.retry_after == 10
    clock.now += 9.99
    assert limiter.hit("k").retry_after == 1


def test_memory_is_bounded_for_100k_keys():
    limiter = TokenBucketLimiter(rate=1, burst=1, max_keys=1000)
    for i in range(100_000):
        limiter.hit(f"k{i}")
    assert len(limiter) == 1000


def test_recently_used_keys_survive_eviction():
    limiter = TokenBucketLimiter(rate=0.001, burst=1, max_keys=3)
    limiter.hit("hot")
    for i in range(10):
        limiter.hit(f"cold{i}")
        limiter.hit("hot")
    assert not limiter.hit("hot").allowed  # still remembered, still in debt


def test_keys():
    assert client_ip_key({"state": {"client_ip": ip_address("192.0.2.1")}}) == "192.0.2.1"
    v6 = {"state": {"client_ip": ip_address("2001:db8:1:2:aaaa::1")}}
    assert client_ip_key(v6) == "2001:db8:1:2::/64"
    assert client_ip_key({"state": {"client_ip": None}}) is None
    assert token_id_key({"state": {"token_id": "tok_1"}}) == "token:tok_1"
    assert token_id_key({"state": {}}) is None


def test_middleware_answers_429_with_retry_after(asgi):
    limiter = TokenBucketLimiter(rate=1, burst=2)

    async def app(scope, receive, send):
        scope["state"] = {"client_ip": ip_address("192.0.2.1")}
        await RateLimitMiddleware(PlainTextResponse("ok"), limiter=limiter, key=client_ip_key)(
            scope, receive, send
        )

    statuses = [asgi(app).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = asgi(app)
    assert refused.is_problem
    assert refused.header("retry-after").isdigit()
    assert int(refused.header("retry-after")) >= 1


def test_middleware_ignores_requests_without_key(asgi):
    limiter = TokenBucketLimiter(rate=1, burst=1)
    app = RateLimitMiddleware(PlainTextResponse("ok"), limiter=limiter, key=lambda scope: None)
    assert [asgi(app).status for _ in range(3)] == [200, 200, 200]
