"""The quality an ``Accept`` header gives a media type (RFC 9110 12.5.1), for content
negotiation at the edge.

The header is a comma-separated list (commas inside quoted strings do not separate) of
media ranges: ``type/subtype``, ``type/*`` or ``*/*``, with parameters and an optional weight
``q=`` qvalue (``0`` to ``1``, at most three decimals, ASCII digits only). A type's quality is
the weight of the most specific range that matches it (type/subtype over type/* over */*;
the highest among equally specific ones; media-type parameters do not take part in
matching), 0 when no range matches. An element that is not a valid media range with a valid
weight is ignored; a header with no valid element is treated as absent: every type is
acceptable, quality 1. Qualities are integers in thousandths, so nothing depends on float
rounding. Any text is answered; nothing here raises.

Not python-mimeparse (considered): it splits the header at every comma, quoted or not, and
raises on the first malformed element, so one bad element would decide for the whole header.
"""

from __future__ import annotations

import re

FULL = 1000
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_PARAM = rf"[ \t]*;[ \t]*({_TOKEN})=({_TOKEN}|{_QUOTED})"
_ELEMENT = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})((?:{_PARAM})*)[ \t]*")
_PARAMS = re.compile(_PARAM)
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


def _elements(header: str) -> list[str]:
    """The list elements of ``header``: split at commas outside quoted strings."""
    out, start, quoted, escaped = [], 0, False, False
    for i, ch in enumerate(header):
        if escaped:
            escaped = False
        elif quoted:
            escaped, quoted = ch == "\\", ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == ",":
            out.append(header[start:i])
            start = i + 1
    out.append(header[start:])
    return out


def _range(element: str) -> tuple[str, str, int] | None:
    """``(type, subtype, weight)`` of one element, lower-cased; None if it is not valid."""
    m = _ELEMENT.fullmatch(element)
    if m is None:
        return None
    kind, sub = m.group(1).lower(), m.group(2).lower()
    if kind == "*" and sub != "*":
        return None
    weight = FULL
    for name, value in _PARAMS.findall(m.group(3)):
        if name.lower() == "q":  # the weight; anything after it is an extension (ignored)
            if not _QVALUE.fullmatch(value):
                return None
            whole, _, frac = value.partition(".")
            weight = int(whole) * FULL + int(frac.ljust(3, "0"))
            break
    return kind, sub, weight


def quality(accept: str, media_type: str) -> int:
    """The quality, in thousandths (0..1000), ``accept`` gives ``media_type`` (``type/sub``)."""
    ranges = [r for r in map(_range, _elements(accept)) if r is not None]
    if not ranges:
        return FULL
    kind, sub = media_type.lower().split("/", 1)
    best: tuple[int, int] = (-1, 0)  # (specificity, weight)
    for r_kind, r_sub, weight in ranges:
        if (r_kind, r_sub) == (kind, sub):
            specificity = 2
        elif r_kind == kind and r_sub == "*":
            specificity = 1
        elif (r_kind, r_sub) == ("*", "*"):
            specificity = 0
        else:
            continue
        best = max(best, (specificity, weight))
    return best[1] if best[0] >= 0 else 0
