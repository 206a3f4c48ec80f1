"""The admin-path check at its edges: absolute-form targets with and without a path, the
last decoding round that still settles, the segments a path normalises to, and scopes that
lack one spelling of the path. Written to kill mutants that survived the mutation check
(docs/testing.md)."""

from __future__ import annotations

import pytest

from ontrackio.gateway.paths import (
    MAX_DECODE_ROUNDS,
    is_admin_path,
    normalise_path_segments,
    scope_is_admin,
    strip_authority,
)


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"http://acme.localhost/admin/x", b"/admin/x"),
        (b"HTTPS://acme.localhost:8443/a//b", b"/a//b"),
        (b"hTtP://acme.localhost", b"/"),
        (b"http:///admin", b"/admin"),  # an empty authority: the path starts right away
        (b"/http://acme.localhost/admin", b"/http://acme.localhost/admin"),
        (b"/plain", b"/plain"),
    ],
)
def test_the_authority_of_an_absolute_form_target_is_dropped(target, path):
    assert strip_authority(target) == path


def layers(n: int) -> bytes:
    """ "/x" percent-encoded n+1 times over: n+2 rounds decode it and see it stable."""
    return b"/%" + b"25" * n + b"78"


def test_the_deepest_encoding_that_settles_is_judged_and_one_more_fails_closed():
    settles = MAX_DECODE_ROUNDS - 2
    assert normalise_path_segments(layers(settles)) == ["x"]
    assert not is_admin_path(layers(settles))
    assert normalise_path_segments(layers(settles + 1)) is None
    assert is_admin_path(layers(settles + 1))


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        (b"/A/./b//c;p=1/ d /", ["a", "b", "c", "d"]),
        (b"/a/b/../../../c", ["c"]),
        (b"/a/%2e%2E/b", ["b"]),
        (b"/a\\b%5Cc", ["a", "b", "c"]),
        (b"/a?b/c#d", ["a"]),
        (b"/a#b?c", ["a"]),
        (b"/a?b?c/d", ["a"]),
        (b"/a#b#c/d", ["a"]),
        (b"/a;x;y/b", ["a", "b"]),
        ("/\uff21\u212a".encode(), ["ak"]),
        (b"/", []),
    ],
)
def test_paths_normalise_to_their_canonical_segments(raw, segments):
    assert normalise_path_segments(raw) == segments


def test_a_path_with_nul_cannot_be_normalised():
    assert normalise_path_segments(b"/a%00b") is None
    assert normalise_path_segments(b"/a\x00b") is None


def test_admin_only_counts_as_the_first_segment():
    assert is_admin_path(b"/x/../admin")
    assert not is_admin_path(b"/x/admin/..")
    assert not is_admin_path(b"/admins")
    assert is_admin_path(b"/;/admin")


def test_a_scope_without_raw_path_is_judged_by_its_decoded_path():
    assert scope_is_admin({"path": "/admin"})
    assert not scope_is_admin({"path": "/assets"})
    assert scope_is_admin({"raw_path": b"", "path": "/admin"})
    assert not scope_is_admin({})  # neither spelling: the root path


def test_a_raw_path_that_is_admin_counts_whatever_the_decoded_path_says():
    """A server whose decoding differs from ours must not hide an admin raw path."""
    assert scope_is_admin({"raw_path": b"/admin", "path": "/assets"})
    assert scope_is_admin({"raw_path": b"/x%3f/../admin", "path": "/x?/../admin"})


def test_a_decoded_path_with_a_lone_surrogate_is_still_judged():
    assert scope_is_admin({"raw_path": b"/x", "path": "/admin/\udc80"})
    assert not scope_is_admin({"raw_path": b"/x", "path": "/x/\udc80"})
