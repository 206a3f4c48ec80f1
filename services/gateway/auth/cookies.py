"""Reading one cookie out of the request's Cookie headers, the way a browser wrote it.

A name is compared exactly, after trimming only what RFC 6265 lets surround a cookie pair
(spaces and tabs): Python's ``str.strip`` also drops characters such as NBSP (U+00A0) and
NEL (U+0085), so ``"\\xa0__Host-x"``, a name a browser sees as unprefixed (and lets a
sibling host set with ``Domain=``), would otherwise read as the host-only ``__Host-x``.
Pairs whose name is not printable ASCII are ignored.

A cookie sent more than once is ambiguous (a second one may have been planted by a sibling
domain under another path), so neither value is believed.
"""

from __future__ import annotations

OWS = " \t"


def _name_ok(name: str) -> bool:
    return bool(name) and name.isascii() and name.isprintable()


def cookie_value(cookie_headers: list[str], name: str) -> str | None:
    """The value of cookie ``name`` when it is sent exactly once, else None (absent or
    ambiguous). An empty value is returned as ""."""
    values = [
        value.strip(OWS)
        for header in cookie_headers
        for key, sep, value in (part.strip(OWS).partition("=") for part in header.split(";"))
        if sep and _name_ok(key) and key == name
    ]
    return values[0] if len(values) == 1 else None
