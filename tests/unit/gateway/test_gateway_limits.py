import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ontrackio.gateway.limits import (
    BodyLimitMiddleware,
    InvalidJSON,
    JSONLimitMiddleware,
    JSONTooDeep,
    json_depth_exceeds,
    loads_limited,
)
from ontrackio.gateway.problems import ProblemGuardMiddleware, install_problem_handlers


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("body", "depth", "too_deep"),
    [
        (b"1", 0, False),
        (b"[]", 1, False),
        (b"[]", 0, True),
        (nested(32), 32, False),
        (nested(33), 32, True),
        (b'{"a": [{"b": [1]}]}', 4, False),
        (b'{"a": [{"b": [1]}]}', 3, True),
        (b'{"a": [{"b": [1]}]}', 2, True),
        (b'["[[[[[[[[[[", "\\"[[[["]', 1, False),  # brackets inside strings do not count
        (b"[" * 100_000, 32, True),  # unterminated: the parser would descend 100k levels
        (b"[[]", 32, False),
        (b"{[]}" * 10, 2, False),
        (b"[{[]}]", 2, True),
    ],
)
def test_json_depth(body, depth, too_deep):
    assert json_depth_exceeds(body, depth) is too_deep


def test_depth_scan_is_linear_on_adversarial_strings():
    # quote/backslash soup that makes naive string regexes quadratic
    assert json_depth_exceeds(b'"\\"' * 300_000, 32) is False


def test_loads_limited():
    assert loads_limited(b'{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(JSONTooDeep):
        loads_limited(nested(100_000))
    for bad in (b"{", b"NaN", b"[Infinity]", b"\xff", b"1" * 5000, b"[1,]"):
        with pytest.raises(InvalidJSON):
            loads_limited(bad)


async def echo_body(request: Request):
    body = await request.body()
    return JSONResponse({"len": len(body), "parsed": getattr(request.state, "json", None)})


def make_app(max_bytes=100, max_depth=32):
    app = Starlette(routes=[Route("/", echo_body, methods=["POST"])])
    install_problem_handlers(app)
    return ProblemGuardMiddleware(
        BodyLimitMiddleware(JSONLimitMiddleware(app, max_depth=max_depth), max_bytes=max_bytes)
    )


JSON = ("Content-Type", "application/json")


def test_small_body_passes(asgi):
    result = asgi(make_app(), method="POST", headers=[JSON], body=[b'{"a":', b"1}"])
    assert result.json() == {"len": 7, "parsed": {"a": 1}}


def test_content_length_over_limit_is_413(asgi):
    result = asgi(make_app(), method="POST", headers=[("Content-Length", "101")], body=[])
    assert result.status == 413
    assert result.is_problem
    assert result.header("connection") == "close"


@pytest.mark.parametrize("headers", [[], [JSON], [("Content-Length", "5")]])
def test_streamed_body_over_limit_is_413(asgi, headers):
    result = asgi(make_app(), method="POST", headers=headers, body=[b"x" * 60, b"x" * 60])
    assert result.status == 413
    assert result.is_problem


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "99999999999999999999999"])
def test_invalid_content_length_is_400(asgi, value):
    assert asgi(make_app(), method="POST", headers=[("Content-Length", value)]).status == 400


def test_conflicting_content_lengths_are_400(asgi):
    headers = [("Content-Length", "1"), ("Content-Length", "2")]
    assert asgi(make_app(), method="POST", headers=headers).status == 400


def test_deeply_nested_json_is_400(asgi):
    result = asgi(
        make_app(max_bytes=1_000_000), method="POST", headers=[JSON], body=[nested(50_000)]
    )
    assert result.status == 400
    assert result.is_problem
    assert "nested" in result.json()["detail"]


def test_invalid_json_is_400(asgi):
    result = asgi(
        make_app(),
        method="POST",
        headers=[("content-type", "application/merge-patch+json")],
        body=[b"{nope"],
    )
    assert result.status == 400
    assert result.is_problem


def test_non_json_bodies_are_not_parsed(asgi):
    result = asgi(
        make_app(), method="POST", headers=[("Content-Type", "text/plain")], body=[b"{nope"]
    )
    assert result.json() == {"len": 5, "parsed": None}


def test_json_depth_just_inside_the_limit(asgi):
    body = json.dumps([[[[1]]]]).encode()
    assert asgi(make_app(max_depth=4), method="POST", headers=[JSON], body=[body]).status == 200
    assert asgi(make_app(max_depth=3), method="POST", headers=[JSON], body=[body]).status == 400
