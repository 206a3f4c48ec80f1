"""Properties of the edge's JSON parser at sizes the other test does not reach
(gateway/limits.py): bodies nested around the default depth limit (32) and far beyond the
interpreter's recursion limit, brackets hidden in strings and escapes, a byte-order mark,
overlong and surrogate UTF-8 — checked against ``json.loads`` as the reference: the parser
returns what json.loads returns, or refuses with a 400 exactly when json.loads fails or the
value is too deep, holds NaN/Infinity, NUL or a lone surrogate.
"""

from __future__ import annotations

import json
import math

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.gateway.limits import DEFAULT_MAX_JSON_DEPTH, InvalidJSON, loads_limited
from tests.unit.gateway.strategies import PROPERTY

DEPTH = DEFAULT_MAX_JSON_DEPTH


def _walk(value):
    """(depth, node) for every node, without recursion (values nest past the stack)."""
    stack = [(0, value)]
    while stack:
        depth, node = stack.pop()
        yield depth, node
        if isinstance(node, dict):
            stack.extend((depth + 1, x) for kv in node.items() for x in kv)
        elif isinstance(node, list):
            stack.extend((depth + 1, x) for x in node)


def _depth(value) -> int:
    # A container counts itself; keys sit one level down like values but are never containers.
    return (
        max(d + 1 for d, n in _walk(value) if isinstance(n, dict | list))
        if isinstance(value, dict | list)
        else 0
    )


def _unsafe(value) -> bool:
    for _, node in _walk(value):
        if isinstance(node, float) and not math.isfinite(node):
            return True
        if isinstance(node, str) and (
            "\x00" in node or any(0xD800 <= ord(c) <= 0xDFFF for c in node)
        ):
            return True
    return False


def _reference(body: bytes):
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return "refuse", None
    if _depth(value) > DEPTH or _unsafe(value):
        return "refuse", None
    return "ok", value


LEAVES = [
    b"1", b'"x"', b'"[[["', b'"]]]"', b'"\\"["', b'"\\\\"', b'"\\u005b"', b"[]", b"{}",
    b'"\xc0\xdb"', b'"\xed\xa0\x80"', b'"\\ud800"', b'"\\u0000"', b"1e999", b"-0", b"NaN",
]  # fmt: skip


@st.composite
def deep_bodies(draw) -> bytes:
    depth = draw(st.one_of(st.integers(DEPTH - 2, DEPTH + 2), st.integers(0, 80),
                           st.sampled_from([999, 1000, 1001, 5000, 100_000])))  # fmt: skip
    kinds = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    opens, closes = [], []
    for i in range(depth):
        obj = kinds[i % len(kinds)]
        opens.append(b'{"k":' if obj else b"[")
        closes.append(b"}" if obj else b"]")
    body = b"".join(opens) + draw(st.sampled_from(LEAVES)) + b"".join(reversed(closes))
    if draw(st.booleans()):  # a sibling before the deep one
        body = b"[" + draw(st.sampled_from(LEAVES)) + b"," + body + b"]"
    if draw(st.integers(0, 9)) == 0:
        body = b"\xef\xbb\xbf" + body  # json.loads refuses a BOM in a str
    if draw(st.integers(0, 9)) == 0:
        body = body[: draw(st.integers(0, len(body)))]  # truncated
    return body


@PROPERTY
@given(deep_bodies())
@example(b"[" * DEPTH + b"]" * DEPTH)
@example(b"[" * (DEPTH + 1) + b"]" * (DEPTH + 1))
@example(b'["' + b"[" * 100_000 + b'"]')
@example(b"[" * 100_000)
def test_deep_and_huge_bodies_agree_with_json_loads(body):
    expected, value = _reference(body)
    try:
        got = loads_limited(body)
    except InvalidJSON as refused:  # JSONTooDeep is one too
        assert refused.status_code == 400
        assert expected == "refuse", body[:200]
        return
    assert expected == "ok", body[:200]
    assert got == value
