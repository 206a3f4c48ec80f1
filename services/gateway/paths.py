"""Path normalisation for the admin check: one canonical form however the path is spelled.

Decisions: percent-decoding is repeated until the path is stable (at most MAX_DECODE_ROUNDS),
so ``%252e%252e`` and ``%2561dmin`` are seen through; ``%2f`` and backslashes count as slashes;
dot segments are resolved; empty segments, ``;params``, case (Unicode case folding after NFKC)
and surrounding whitespace are ignored. The result over-approximates what any router could map
to /admin: a false positive only means the allowlist is checked, a false negative would be a
bypass. A path that does not settle, or contains NUL, is treated as admin (fail closed).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

from starlette.types import Scope

MAX_DECODE_ROUNDS = 8
ADMIN_SEGMENT = "admin"


def _strip_authority(raw_path: bytes) -> bytes:
    # An absolute-form target (h11 hands it through verbatim) carries scheme and authority.
    lowered = raw_path[:8].lower()
    if lowered.startswith((b"http://", b"https://")):
        rest = raw_path.split(b"//", 1)[1]
        slash = rest.find(b"/")
        return rest[slash:] if slash >= 0 else b"/"
    return raw_path


def _fully_decoded(raw: bytes) -> bytes | None:
    current = raw.replace(b"\\", b"/")
    for _ in range(MAX_DECODE_ROUNDS):
        decoded = unquote_to_bytes(current).replace(b"\\", b"/")
        if decoded == current:
            return current
        current = decoded
    return None


def normalise_path_segments(raw_path: bytes) -> list[str] | None:
    """Canonical segments of a raw request path, or None when it cannot be normalised safely."""
    path = _strip_authority(raw_path).split(b"?", 1)[0].split(b"#", 1)[0]
    decoded = _fully_decoded(path)
    if decoded is None or b"\x00" in decoded:
        return None
    text = unicodedata.normalize("NFKC", decoded.decode("utf-8", errors="replace")).casefold()
    segments: list[str] = []
    for piece in text.split("/"):
        segment = piece.split(";", 1)[0].strip()
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return segments


def is_admin_path(raw_path: bytes) -> bool:
    """True for anything that resolves to /admin or /admin/...; pass ``scope["raw_path"]``."""
    segments = normalise_path_segments(raw_path)
    return segments is None or (bool(segments) and segments[0] == ADMIN_SEGMENT)


def scope_is_admin(scope: Scope) -> bool:
    """Admin check over both the raw and the server-decoded path, so neither spelling slips by."""
    decoded = scope.get("path", "").encode("utf-8", "surrogatepass")
    return is_admin_path(scope.get("raw_path") or decoded) or is_admin_path(decoded)
