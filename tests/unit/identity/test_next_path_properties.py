"""``next`` after sign-in: a same-host path or "/", whatever arrives."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.identity.signin.next_path import safe_next


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/%2F/evil.example",
        "/%2f%2fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "javascript:alert(1)",
        "/ok#//evil",
        "/\x00",
        "/a\r\nSet-Cookie: x=1",
        "/" + "a" * 3000,
        " /assets",
    ],
)
def test_hostile_next_falls_back_to_root(raw):
    assert safe_next(raw) == "/"


@pytest.mark.parametrize("raw", ["/", "/assets", "/assets?page=2&sort=name", "/a/b-c_d.e~f"])
def test_same_host_paths_are_kept(raw):
    assert safe_next(raw) == raw


@given(st.text(max_size=300))
@example("/%2F%2Fevil")
@example("/\u2215\u2215evil")
def test_whatever_arrives_the_result_stays_on_this_host(raw):
    out = safe_next(raw)
    assert out == "/" or out == raw
    for seen in (out, unquote(out), unquote(unquote(out))):
        assert seen.startswith("/") and not seen.startswith("//") and "\\" not in seen
    assert out.isascii() and out.isprintable() and " " not in out
