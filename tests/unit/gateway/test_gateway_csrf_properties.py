"""The CSRF check's reading of Origin and Referer: any header text is an origin or nothing,
never an exception, and only the exact origin of this host passes."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from ontrackio.gateway.auth import csrf

EXPECTED = "http://acme.localhost:8080"


@given(st.text(max_size=300))
@example("http://acme.localhost:8080@evil.example")
@example("http://evil.example#@acme.localhost:8080")
@example("http://acme.localhost:99999")
@example("http://[::1")
def test_any_header_text_is_an_origin_or_nothing(text):
    origin = csrf.origin_of(text)
    assert origin is None or origin.startswith(("http://", "https://"))
    headers = Headers(raw=[(b"origin", text.encode("utf-8", "surrogatepass"))])
    if csrf.origin_ok(headers, EXPECTED):
        assert origin == EXPECTED


def test_look_alikes_do_not_pass():
    for value in (
        "http://acme.localhost:8080@evil.example",
        "http://acme.localhost.evil.example:8080",
        "https://acme.localhost:8080",
        "http://acme.localhost:8081",
        "null",
        "",
    ):
        assert not csrf.origin_ok(Headers({"origin": value}), EXPECTED), value
    assert csrf.origin_ok(Headers({"origin": "HTTP://ACME.localhost:8080"}), EXPECTED)
