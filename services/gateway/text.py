"""Text the services can take: no NUL character and no lone surrogate, anywhere.

PostgreSQL refuses NUL in text, and a lone surrogate (``"\\ud800"`` as a JSON escape) cannot be
encoded as UTF-8, so neither protobuf nor the response encoder can carry it. Both are refused
at the gateway, as a 400 naming where, before any service is asked.
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile("[\x00\ud800-\udfff]")


class UnsafeText(ValueError):
    """A string holds NUL or a lone surrogate; the message names where (never the value)."""


def check_text(value: str, where: str) -> str:
    """Return ``value``; raise UnsafeText if it holds NUL or a lone surrogate."""
    found = _UNSAFE.search(value)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
        raise UnsafeText(f"{where} contains {what}, which is not allowed in text")
    return value


def check_tree(value: Any, where: str = "body") -> Any:
    """Check every string of a parsed JSON value, object keys included; return ``value``.

    Iterative, so it needs no recursion budget whatever the depth.
    """
    pending = [(value, where)]
    while pending:
        item, at = pending.pop()
        if isinstance(item, str):
            check_text(item, at)
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(key, f"a key in {at}")
                pending.append((child, f"{at}.{key}"))
        elif isinstance(item, list):
            pending.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
    return value
