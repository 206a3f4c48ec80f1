"""Where a browser may be sent after signing in: a path on this same host, nothing else.
Pure; the gateway checks ``next`` with it before asking identity, and identity checks again.

``next`` arrives from the query string or a form, so it is hostile: absolute URLs,
scheme-relative ``//evil``, backslashes (browsers read ``/\\evil`` as ``//evil``), control
characters and percent-encoded forms of them all fall back to "/".
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MAX_NEXT = 2000
# A path, optionally a query: printable ASCII without backslash; no fragment.
_SAFE = re.compile(r"/(?![/\\])[\x21-\x7e]*\Z")
DEFAULT = "/"


def safe_next(raw: str | None) -> str:
    """``raw`` when it is a same-host absolute path (with optional query), else "/"."""
    if not raw or len(raw) > MAX_NEXT or not _SAFE.match(raw) or "\\" in raw or "#" in raw:
        return DEFAULT
    decoded = raw
    for _ in range(3):  # what any decoding layer would see must be safe too
        decoded = unquote(decoded)
        if decoded.startswith("//") or "\\" in decoded or not decoded.startswith("/"):
            return DEFAULT
        if any(ord(c) < 0x21 or ord(c) == 0x7F for c in decoded):
            return DEFAULT
    return raw
