"""The edge's body size limit and the JSON parser with its limits (depth, NUL, surrogates)."""

import json
import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ontrackio.gateway.limits import (
    BodyLimitMiddleware,
    InvalidJSON,
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
    for bad in (b"{", b"NaN", b"[Infinity]", b"\xff", b"1" * 5000, b"[1,]", b"\xef\xbb\xbf1"):
        with pytest.raises(InvalidJSON):
            loads_limited(bad)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (rb'"\ud800"', "surrogate"),
        (rb'["ok", {"k": "\udc00"}]', "body[1].k contains a lone surrogate"),
        (rb'{"\udbff": 1}', "a key in body contains a lone surrogate"),
        (rb'{"a": "x\u0000y"}', "body.a contains a NUL"),
        (rb'{"\u0000": 1}', "a key in body contains a NUL"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_with_where(body, words):
    with pytest.raises(InvalidJSON) as refused:
        loads_limited(body)
    assert refused.value.status_code == 400 and words in refused.value.detail
    # the detail is itself encodable (it names where, never the value)
    refused.value.detail.encode("utf-8")


def test_paired_surrogates_are_ordinary_text():
    assert loads_limited(rb'"\ud83d\ude00"') == "\U0001f600"


# -- property: loads_limited accepts exactly what json.loads accepts, within the limits ---------

DEPTH = 6


def depth_of(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


def texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [k, *texts(v)]]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def has_constant(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_constant(v) for v in value.values())
    if isinstance(value, list):
        return any(has_constant(v) for v in value)
    return False


def reference(body: bytes):
    """What the limited parser must do: ("ok", value) or ("refuse", None)."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return ("refuse", None)
    if has_constant(value) or depth_of(value) > DEPTH:
        return ("refuse", None)
    if any("\x00" in t or any(0xD800 <= ord(c) <= 0xDFFF for c in t) for t in texts(value)):
        return ("refuse", None)
    return ("ok", value)


ODD_TEXT = st.text(
    st.sampled_from(
        ["a", "[", "]", "{", "}", '"', "\\", "\x00", "\ud800", "\udfff", "Ａ", "é", "😀"]
    )
    | st.characters(),
    max_size=8,
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ODD_TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=12,
)


def encodings(value, ensure_ascii: bool) -> bytes:
    # ensure_ascii writes lone surrogates as \uXXXX escapes; without it they make invalid UTF-8
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


JUNK = st.sampled_from(
    [
        b"",
        b"[",
        b"]",
        b"{",
        b"}",
        b'"',
        b"\\",
        b",",
        b":",
        b"\xff",
        b"\xed\xa0\x80",
        b"\x00",
        b" ",
        b"1e999",
        b"NaN",
        b"\\u0000",
        b"\\ud800",
    ]
)


@st.composite
def bodies(draw) -> bytes:
    body = encodings(draw(VALUES), draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):  # splice junk in: most become invalid JSON
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(JUNK) + body[at:]
    return body


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies())
@example(b"[" * 7 + b"]" * 7)
@example(b"[" * 6 + b"]" * 6)
@example(b'{"a": "\\ud800"}')
@example(b'["\\u0000"]')
@example(b'"[[[[[[[[[["')
@example(b"9" * 5000)
@example(b"[1e999]")
def test_limited_parser_agrees_with_json_loads(body):
    expected, value = reference(body)
    try:
        got = loads_limited(body, max_depth=DEPTH)
    except InvalidJSON as refused:  # JSONTooDeep is one too
        assert refused.status_code == 400
        assert expected == "refuse", (body, value)
        return
    assert expected == "ok", body
    assert json.dumps(got, sort_keys=True) == json.dumps(value, sort_keys=True)


# -- the edge's body size limit ----------------------------------------------------------------


async def echo_body(request: Request):
    body = await request.body()
    return JSONResponse({"len": len(body)})


def make_app(max_bytes=100):
    app = Starlette(routes=[Route("/", echo_body, methods=["POST"])])
    install_problem_handlers(app)
    return ProblemGuardMiddleware(BodyLimitMiddleware(app, max_bytes=max_bytes))


JSON = ("Content-Type", "application/json")


def test_small_body_passes(asgi):
    result = asgi(make_app(), method="POST", headers=[JSON], body=[b'{"a":', b"1}"])
    assert result.json() == {"len": 7}


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
