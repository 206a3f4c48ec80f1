"""The path guard: every traversal and normalisation spelling is refused with its reason."""

from __future__ import annotations

import pytest
from starlette.responses import JSONResponse

from ontrackio.gateway.path_guard import (
    PathGuardMiddleware,
    PathRefusal,
    inspect_path,
    inspect_scope,
)

R = PathRefusal

REFUSED = [
    # Seen in review: each reached DELETE /admin/api/v1/tokens/{id} from a denied address.
    (b"/admin/api/v1/tokens/..%5c..%5c..%5c..", R.BACKSLASH),
    (b"/admin/api/v1/tokens/..\\..\\..\\..", R.BACKSLASH),
    (b"/admin/api/v1/tokens/%252e%252e%252f", R.ENCODED_SLASH),
    ("/admin/api/v1/tokens/‥／".encode(), R.COMPATIBILITY),
    # dot segments, plain and encoded
    (b"/..", R.DOT_SEGMENT),
    (b"/.", R.DOT_SEGMENT),
    (b"/a/./b", R.DOT_SEGMENT),
    (b"/a/../b", R.DOT_SEGMENT),
    (b"/a/...", R.DOT_SEGMENT),
    (b"/a/..;x=1/b", R.DOT_SEGMENT),
    (b"/a/%2e%2e/b", R.DOT_SEGMENT),
    (b"/a/%2E./b", R.DOT_SEGMENT),
    (b"/a/.%2e", R.DOT_SEGMENT),
    (b"/a/%252e%252e/b", R.DOT_SEGMENT),
    (b"/a/%25252e%25252e/b", R.DOT_SEGMENT),
    (b"/a/%20..%20/b", R.DOT_SEGMENT),
    (b"http://acme.localhost/a/../admin", R.DOT_SEGMENT),
    # backslashes and encoded slashes
    (b"\\admin", R.BACKSLASH),
    (b"/a%5Cb", R.BACKSLASH),
    (b"/a%255cb", R.BACKSLASH),
    (b"/a%2fb", R.ENCODED_SLASH),
    (b"/a%2Fb", R.ENCODED_SLASH),
    (b"/a%252fb", R.ENCODED_SLASH),
    (b"/a%25252Fb", R.ENCODED_SLASH),
    # NUL and other controls
    (b"/admin%00", R.CONTROL),
    (b"/a%2500", R.CONTROL),
    (b"/a%0d%0aSet-Cookie:x", R.CONTROL),
    (b"/a%7f", R.CONTROL),
    (b"/a%c2%85", R.CONTROL),  # NEL, a C1 control
    # not UTF-8: overlong dots and slashes, encoded surrogates, stray bytes
    (b"/a/%c0%ae%c0%ae/b", R.NOT_UTF8),
    (b"/a%c0%afb", R.NOT_UTF8),
    (b"/a%e0%80%ae", R.NOT_UTF8),
    (b"/a%ed%a0%80", R.NOT_UTF8),
    (b"/a%ff", R.NOT_UTF8),
    # compatibility forms that NFKC folds into ".", "/", "\" or "%"
    ("/a/．．/b".encode(), R.COMPATIBILITY),
    ("/a/‥".encode(), R.COMPATIBILITY),
    ("/a/…".encode(), R.COMPATIBILITY),
    ("/a／b".encode(), R.COMPATIBILITY),
    ("/a＼b".encode(), R.COMPATIBILITY),
    ("/a﹒b".encode(), R.COMPATIBILITY),
    ("/a％2e".encode(), R.COMPATIBILITY),
    (b"/a/%EF%BC%8E%EF%BC%8E/b", R.COMPATIBILITY),
    (b"/a/%E2%80%A5", R.COMPATIBILITY),
    (b"/a%EF%BC%8Fb", R.COMPATIBILITY),
    (b"/a%25EF%25BC%25BCb", R.COMPATIBILITY),
    # more layers than any legitimate client uses
    (b"/" + b"%" + b"25" * 12 + b"41", R.TOO_ENCODED),
]

ACCEPTED = [
    b"/",
    b"",
    b"*",
    b"/api/v1/assets",
    b"/api/v1/assets/5b0f6d2e-3c5c-4f4e-9a7a-1f0e2d3c4b5a",
    b"/admin/api/v1/tokens/0123456789abcdef01234567",
    b"/.well-known/security.txt",
    b"/a/.b/c..d/..e",
    b"/a/b.",
    b"//a///b/",
    b"/a;x=1/b",
    b"/100%",
    b"/a%zz",
    b"/a%41b",
    b"/%ef%bd%81dmin",  # full-width "a": the admin check folds it, nothing to refuse here
    "/café/ünïcödé".encode(),
    b"http://acme.localhost/api/v1/assets",
    b"/api/v1/assets?next=../../x%2f..",  # the query is not the path
]


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_refused_spellings(raw, reason):
    assert inspect_path(raw) is reason


@pytest.mark.parametrize("raw", ACCEPTED)
def test_ordinary_paths_pass(raw):
    assert inspect_path(raw) is None


def test_the_decoded_path_is_inspected_too():
    # A server (or test client) that hands over a decoded path without the raw one.
    assert inspect_scope({"path": "/a/../b"}) is R.DOT_SEGMENT
    assert inspect_scope({"raw_path": b"/fine", "path": "/a\\b"}) is R.BACKSLASH
    assert inspect_scope({"raw_path": b"/fine", "path": "/a\ud800"}) is R.NOT_UTF8
    assert inspect_scope({"raw_path": b"/a/b", "path": "/a/b"}) is None


async def _reached(scope, receive, send):
    await JSONResponse({"reached": True})(scope, receive, send)


@pytest.mark.parametrize(("raw", "reason"), REFUSED[:4])
def test_middleware_answers_a_400_problem_with_the_reason(asgi, raw, reason):
    result = asgi(PathGuardMiddleware(_reached), raw)
    assert result.status == 400 and result.is_problem
    assert result.json()["detail"] == reason.value


def test_middleware_passes_clean_paths(asgi):
    assert asgi(PathGuardMiddleware(_reached), b"/api/v1/assets").json() == {"reached": True}
