"""Properties of the path guard and the admin check over hostile paths.

The guard must be total, must agree with a layer-by-layer reference built on urllib's own
decoder, must keep refusing when a trick is spliced into an accepted path or the path is
encoded once more; the admin check must hold whenever a real Starlette router would send the
request to an admin route.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote_from_bytes, unquote

from hypothesis import assume, example, given
from hypothesis import strategies as st
from starlette.routing import Match, Route

from ontrackio.gateway.path_guard import PathRefusal, inspect_path, inspect_scope
from ontrackio.gateway.paths import is_admin_path, normalise_path_segments
from tests.unit.gateway.strategies import PROPERTY, any_bytes, raw_paths

TRICKS = [
    b"/..",
    b"/.",
    b"/%2e%2e",
    b"/%252e%252e",
    b"/%2f",
    b"%2F",
    b"/%252f",
    b"\\",
    b"%5c",
    b"%255C",
    b"%00",
    b"%2500",
    b"%c0%ae",
    "\uff0e".encode(),
    "\u2025".encode(),
    "\uff0f".encode(),
    "\uff3c".encode(),
    b"%EF%BC%8E",
    b"/..;x",
]


def _layers(path: bytes) -> list[str]:
    # urllib's str decoder (a different one from the guard's), one round at a time.
    layers = [path.decode("latin-1")]
    for _ in range(12):
        nxt = unquote(layers[-1], encoding="latin-1")
        if nxt == layers[-1]:
            break
        layers.append(nxt)
    return layers


def _clean_by_reference(path: bytes) -> bool:
    layers = _layers(path)
    final = layers[-1].encode("latin-1")
    try:
        text = final.decode("utf-8")
    except UnicodeDecodeError:
        return False
    folded = unicodedata.normalize("NFKC", text)
    for layer in [*layers, text]:
        if "\\" in layer or layer.count("/") != layers[0].count("/"):
            return False
        for segment in layer.split("/"):
            core = segment.split(";", 1)[0].strip(" \t\r\n\v\f")
            if core and set(core) == {"."}:
                return False
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return False
    # No look-alike: NFKC adds no separator, dot or escape that was not there.
    return all(folded.count(ch) == text.count(ch) for ch in "./\\%")


@PROPERTY
@given(st.one_of(raw_paths(), any_bytes))
@example(b"/admin/api/v1/tokens/..%5c..%5c..%5c..")
@example("/admin/api/v1/tokens/\u2025\uff0f".encode())
def test_total_and_in_agreement_with_the_reference(raw):
    verdict = inspect_path(raw)  # never raises
    assert verdict is None or isinstance(verdict, PathRefusal)
    if verdict is None:
        assert _clean_by_reference(raw.split(b"?", 1)[0]), raw
    elif verdict is not PathRefusal.TOO_ENCODED:
        assert not _clean_by_reference(raw.split(b"?", 1)[0]), (raw, verdict)


# Paths the guard accepts, built directly (filtering hostile ones would discard most).
clean_paths = st.lists(
    st.sampled_from(
        ["api", "v1", "admin", "x", "%41", "%c3%a9", "\u00e9", "a.b", "..x", ";p=1", ""]
    )
    | st.text(st.characters(categories=["L", "N"]), max_size=6),
    max_size=8,
).map(lambda parts: ("/" + "/".join(parts)).encode())


@PROPERTY
@given(clean_paths, st.sampled_from(TRICKS), st.data())
def test_a_trick_spliced_into_an_accepted_path_is_refused(raw, trick, data):
    assume(inspect_path(raw) is None)
    at = data.draw(st.integers(0, len(raw)))
    spliced = raw[:at] + b"/" + trick + b"/" + raw[at:]
    assert inspect_path(spliced) is not None, spliced


@PROPERTY
@given(raw_paths())
def test_one_more_encoding_keeps_the_verdict(raw):
    raw = raw.split(b"?", 1)[0]
    first = inspect_path(raw)
    again = inspect_path(quote_from_bytes(raw, safe="/").encode())
    assume(PathRefusal.TOO_ENCODED not in (first, again))
    assert (first is None) == (again is None), (raw, first, again)


@PROPERTY
@given(st.one_of(raw_paths(), any_bytes), st.text(max_size=20))
def test_scope_inspection_is_total_over_decoded_paths(raw, decoded):
    scope = {"raw_path": raw, "path": decoded}
    assert inspect_scope(scope) in (None, *PathRefusal)


ADMIN_ROUTES = [
    Route(p, lambda request: None)
    for p in ("/admin/api/v1/tokens", "/admin/api/v1/tokens/{id}", "/admin/api/v1/allowlist")
]


@st.composite
def admin_like(draw) -> bytes:
    prefix = draw(
        st.sampled_from(
            [b"/admin/api/v1/tokens/", b"/%61dmin/api/v1/tokens/", b"/admin/api/v1/", b"/"]
        )
    )
    return prefix + draw(raw_paths()).lstrip(b"/")


@PROPERTY
@given(st.one_of(admin_like(), raw_paths()))
def test_every_request_a_router_sends_to_admin_is_guarded_or_admin(raw):
    # What uvicorn gives the router: the raw path percent-decoded once.
    raw = raw.split(b"?", 1)[0]
    scope = {"type": "http", "method": "DELETE", "path": unquote(raw.decode("latin-1"))}
    routed = any(route.matches(scope)[0] is Match.FULL for route in ADMIN_ROUTES)
    if routed:
        assert inspect_path(raw) is not None or is_admin_path(raw), raw


@PROPERTY
@given(st.one_of(raw_paths(), any_bytes))
def test_admin_check_is_total_and_over_approximates_the_first_segment(raw):
    admin = is_admin_path(raw)  # never raises
    segments = normalise_path_segments(raw)
    if segments is None:
        assert admin
    elif segments and segments[0] == "admin":
        assert admin


def _canonical(segments: list[str]) -> bytes:
    return quote_from_bytes(("/" + "/".join(segments)).encode("utf-8", "surrogatepass")).encode()


@PROPERTY
@given(st.one_of(raw_paths(), clean_paths))
@example(b"/%25\xef\xac\x83")  # "%" + NFKC("ﬃ") = "%ffi": folding completed an escape
def test_normalised_segments_are_a_fixed_point(raw):
    segments = normalise_path_segments(raw)
    assume(segments is not None)
    assert normalise_path_segments(_canonical(segments)) == segments, raw
