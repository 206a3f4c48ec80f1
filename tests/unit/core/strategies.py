"""Hypothesis strategies for hostile input to core's parsers (page tokens, event envelopes,
slugs), shared by the ``test_core_*_properties.py`` files.

Text mixes atoms that matter to a parser — NUL, lone surrogates, full-width and compatibility
forms, bidi controls, Unicode spaces and digits, percent, double-percent and overlong UTF-8
spellings — with arbitrary code points; JSON values nest far past any sane depth on demand.
``PROPERTY`` is the common settings: no example database (no files left in the checkout), no
per-example deadline (a loaded CI host is not a bug).
"""

from __future__ import annotations

import base64
import json

from hypothesis import strategies as st

from tests.unit.gateway.strategies import PROPERTY  # noqa: F401 - the suite's one profile

TEXT_ATOMS = [
    "\x00", "\ud800", "\udfff", "\ud83d", "\ufeff", "\u200b", "\u200d",
    "\u202e", "\u202d", "\u2066", "\u2069", "\u061c",  # bidi controls
    "\uff41", "\uff10", "\uff0d", "\u0661", "\u00b2", "\u2460", "\u212a", "\u0130", "\ufb03",
    "\u00a0", "\u3000", "\x85", "\u2028", "\n", "\r", "\t", " ",
    "%00", "%2e", "%252e", "%c0%ae", "%e0%80%ae", "%ed%a0%80", "%ff", "%",
    "\\u0000", "\\ud800", "=", "+", "-", "@", '"', ",", ";",
]  # fmt: skip

hostile_text = st.lists(
    st.one_of(st.sampled_from(TEXT_ATOMS), st.text(st.characters(codec=None), max_size=6)),
    max_size=10,
).map("".join)


def b64(raw: bytes) -> str:
    """URL-safe base64 without padding, as page tokens are spelled."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def nested(depth: int, leaf: str = "1") -> str:
    """A JSON text of `depth` arrays and objects inside each other."""
    opens = "".join('{"a":' if i % 2 else "[" for i in range(depth))
    closes = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return opens + leaf + closes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=16,
)


def json_bytes(value) -> bytes:
    """`value` as JSON bytes; lone surrogates become invalid UTF-8 half the time."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


# Sizes: nesting around and far beyond the interpreter's recursion limit.
depths = st.one_of(st.integers(1, 40), st.integers(900, 1100), st.sampled_from([5000, 100_000]))
