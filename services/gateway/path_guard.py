"""The path guard: request paths that only an attack would spell are refused at the edge.

No route of the API has a segment made of dots, a backslash, an encoded slash, a control
character or a character that NFKC folds into ``.``, ``/``, ``\\`` or ``%``; such a path is a
traversal or normalisation trick aimed at some layer that decodes differently from ours (the
router, a proxy, a future handler). Rather than guess how each layer would read it, the guard
refuses the request with a 400 problem before the tenant look-up, the allowlist or routing.

What is inspected: the raw request target (``scope["raw_path"]``, authority of an absolute-form
target removed, query left out) and the server-decoded ``scope["path"]``, each percent-decoded
repeatedly until stable (at most ``MAX_DECODE_ROUNDS``), so double and deeper encodings
(``%252e%252e%252f``) count like plain ones. Every character that appears in some decoding round
survives into the last one, and decoding never removes ``/`` or ``.``; checking the raw form
and the fully decoded form therefore covers every intermediate round.
"""

from __future__ import annotations

import unicodedata
from enum import Enum
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from ontrackio.gateway.paths import MAX_DECODE_ROUNDS, strip_authority
from ontrackio.gateway.problems import problem

# Characters whose look-alikes are refused: after NFKC they would be separators or escapes.
_FOLDED = ("/", "\\", ".", "%")
# Whitespace a lenient parser might strip around a segment before comparing it with "..".
_SEGMENT_PADDING = " \t\r\n\v\f"


class PathRefusal(Enum):
    """Why a path was refused; the value is the problem detail shown to the client."""

    DOT_SEGMENT = "The request path contains a '.' or '..' segment (percent-encoded or not)."
    BACKSLASH = "The request path contains a backslash (raw or percent-encoded)."
    ENCODED_SLASH = "The request path contains a percent-encoded slash (%2F)."
    CONTROL = "The request path contains NUL or another control character."
    NOT_UTF8 = "The request path is not valid UTF-8 once percent-decoded (e.g. overlong forms)."
    COMPATIBILITY = (
        "The request path contains a character that Unicode normalisation (NFKC) turns into "
        "'.', '/', '\\' or '%' (e.g. full-width forms)."
    )
    TOO_ENCODED = f"The request path is percent-encoded more than {MAX_DECODE_ROUNDS} times over."


def _decoded(path: bytes) -> bytes | None:
    current = path
    for _ in range(MAX_DECODE_ROUNDS + 1):
        decoded = unquote_to_bytes(current)
        if decoded == current:
            return current
        current = decoded
    return None


def _has_dot_segment(decoded: bytes) -> bool:
    for piece in decoded.split(b"/"):
        segment = piece.split(b";", 1)[0].strip(_SEGMENT_PADDING.encode())
        if segment and not segment.strip(b"."):
            return True
    return False


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def inspect_path(raw_path: bytes) -> PathRefusal | None:
    """The first reason to refuse ``raw_path`` (bytes as sent, no query), or None if it is clean.

    Total: never raises, whatever the bytes. Deterministic and linear in the path length times
    the decoding rounds. A segment counts as a dot segment when, before any ``;params`` and
    surrounding whitespace, it is made of dots only (so ``...`` and ``..;x`` are refused too).
    """
    path = strip_authority(raw_path).split(b"?", 1)[0]
    if b"\\" in path:
        return PathRefusal.BACKSLASH
    decoded = _decoded(path)
    if decoded is None:
        return PathRefusal.TOO_ENCODED
    if b"\\" in decoded:
        return PathRefusal.BACKSLASH
    if decoded.count(b"/") != path.count(b"/"):
        return PathRefusal.ENCODED_SLASH
    if _has_dot_segment(decoded):
        return PathRefusal.DOT_SEGMENT
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return PathRefusal.NOT_UTF8
    if _has_control(text):
        return PathRefusal.CONTROL
    if not text.isascii():
        folded = unicodedata.normalize("NFKC", text)
        if any(folded.count(ch) != text.count(ch) for ch in _FOLDED):
            return PathRefusal.COMPATIBILITY
    return None


def inspect_scope(scope: Scope) -> PathRefusal | None:
    """``inspect_path`` over the raw target and the server-decoded path; the first refusal wins.

    ``scope["path"]`` is encoded back with ``surrogatepass``, so a lone surrogate (which no
    UTF-8 decoder produces, but an ASGI test client can) is refused as not UTF-8.
    """
    decoded = scope.get("path", "").encode("utf-8", "surrogatepass")
    raw = scope.get("raw_path") or decoded
    return inspect_path(raw) or inspect_path(decoded)


class PathGuardMiddleware:
    """400 problem (detail: the PathRefusal text) for a refused path; other requests pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = inspect_scope(scope)
            if refusal is not None:
                await problem(400, detail=refusal.value)(scope, receive, send)
                return
        await self.app(scope, receive, send)
