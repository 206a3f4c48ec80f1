"""Hypothesis strategies for hostile edge input, shared by the gateway's property tests.

Paths and header values are built from atoms that matter to a parser (dots, slashes, escapes,
look-alikes, controls, surrogates, bidi marks) mixed with arbitrary text, then optionally
percent-encoded once or twice more. ``PROPERTY`` is the common settings: no example database
(no files left in the checkout), no per-example deadline (a loaded CI host is not a bug).
"""

from __future__ import annotations

from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PATH_ATOMS = [
    "/", "//", ".", "..", "...", "\\", ";", ";x=1", "?", "#", " ", "\t",
    "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%25", "%252e", "%252f", "%255c", "%25252e",
    "%00", "%2500", "%0a", "%7f", "%c0%ae", "%c0%af", "%e0%80%ae", "%ed%a0%80", "%ff", "%",
    "%zz", "%2", "admin", "ADMIN", "Admin", "%61dmin", "%2561dmin", "api", "v1", "tokens",
    "\u00e9", "\uff0e", "\uff0f", "\uff3c", "\u2025", "\u2026", "\ufe52", "\u2024", "\uff05",
    "\uff41dmin", "\u212a", "\u0130", "\u00df", "\ufb03",
    "\u202e", "\u202d", "\u2066", "\u200b", "\u200d", "\ufeff", "\x00", "\x85", "\u3000",
    "\ud800", "\udfff",
]  # fmt: skip


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _encode(path: bytes, safe: bytes) -> bytes:
    return quote_from_bytes(path, safe=safe).encode("ascii")


path_text = st.lists(st.one_of(st.sampled_from(PATH_ATOMS), st.text(max_size=8)), max_size=12).map(
    "".join
)


@st.composite
def raw_paths(draw) -> bytes:
    """A raw request path: hostile atoms and arbitrary text, encoded 0-2 more times."""
    path = _to_bytes("/" + draw(path_text))
    for _ in range(draw(st.integers(0, 2))):
        path = _encode(path, safe=draw(st.sampled_from([b"/", b"/%", b"", b"/.;"])))
    if draw(st.booleans()):
        path = path * draw(st.integers(1, 60))  # long paths
    return path


any_bytes = st.binary(max_size=300)
# Arbitrary text including lone surrogates, NUL and every plane.
any_text = st.text(st.characters(exclude_categories=()), max_size=80)
latin1_text = st.text(st.characters(max_codepoint=0xFF), max_size=60)
