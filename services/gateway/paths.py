"""Path normalisation for the admin check: one canonical form however the path is spelled.

Decisions: percent-decoding is repeated until the path is stable (at most MAX_DECODE_ROUNDS),
so ``%252e%252e`` and ``%2561dmin`` are seen through; ``%2f`` and backslashes count as slashes;
dot segments are resolved (and a path that is /admin at any step of resolving them counts
as admin); empty segments, ``;params``, case (Unicode case folding after NFKC)
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


def strip_authority(raw_path: bytes) -> bytes:
    """The path of a request target: scheme and authority of an absolute-form target removed.

    h11 hands an absolute-form target (``http://host/path``) through verbatim as the raw path.
    """
    lowered = raw_path[:8].lower()
    if lowered.startswith((b"http://", b"https://")):
        rest = raw_path.split(b"//", 1)[1]
        slash = rest.find(b"/")
        return rest[slash:] if slash >= 0 else b"/"
    return raw_path


def _fully_decoded(raw: bytes) -> bytes | None:
    # Each round percent-decodes, then folds compatibility forms (NFKC), because folding can
    # complete an escape ("%" followed by the ligature "ﬀ" is "%ff"): the result is stable
    # under both, so normalising its canonical spelling again gives the same segments.
    current = raw.replace(b"\\", b"/")
    for _ in range(MAX_DECODE_ROUNDS):
        text = unquote_to_bytes(current).decode("utf-8", errors="replace")
        decoded = unicodedata.normalize("NFKC", text).encode("utf-8").replace(b"\\", b"/")
        if decoded == current:
            return current
        current = decoded
    return None


def _canonical_text(raw_path: bytes) -> str | None:
    # Fully decoded, NFKC, case-folded path; None when it does not settle or contains NUL.
    path = strip_authority(raw_path).split(b"?", 1)[0].split(b"#", 1)[0]
    decoded = _fully_decoded(path)
    if decoded is None or b"\x00" in decoded:
        return None
    text = unicodedata.normalize("NFKC", decoded.decode("utf-8", errors="replace")).casefold()
    return text.replace("\\", "/")  # NFKC makes U+FF3C and U+FE68 backslashes


def normalise_path_segments(raw_path: bytes) -> list[str] | None:
    """Canonical segments of a raw request path, or None when it cannot be normalised safely."""
    text = _canonical_text(raw_path)
    return None if text is None else _walk(text)[0]


def _walk(text: str) -> tuple[list[str], bool]:
    # The resolved segments, and whether "admin" was the first segment at any step of the walk.
    segments: list[str] = []
    admin_seen = False
    for piece in text.split("/"):
        segment = piece.split(";", 1)[0].strip()
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
        admin_seen |= segments[0] == ADMIN_SEGMENT
    return segments, admin_seen


def is_admin_path(raw_path: bytes) -> bool:
    """True for anything that is /admin or /admin/... at any step; pass ``scope["raw_path"]``.

    "At any step": ``/admin/../x`` counts too, since a router that does not resolve dot segments
    (Starlette does not) maps it under /admin. Never raises.
    """
    text = _canonical_text(raw_path)
    return text is None or _walk(text)[1]


def scope_is_admin(scope: Scope) -> bool:
    """Admin check over both the raw and the server-decoded path, so neither spelling slips by."""
    decoded = scope.get("path", "").encode("utf-8", "surrogatepass")
    return is_admin_path(scope.get("raw_path") or decoded) or is_admin_path(decoded)
