"""The hash chain of audit entries: canonical encoding (version 1) and hashes.

Pure rules, no database: the SQL function ``audit.encode`` (core migration 0002) produces
the same bytes when it seals entries, and the verifier recomputes every hash with this
module, so a row changed behind the database's back is found whatever the server's
functions say.

Contract: ``hash_n = sha256(hash_(n-1) || encode(entry_n))`` with ``hash_0`` 32 zero bytes;
``encode`` writes ``v1`` then every field as ``<UTF-8 byte length>:<bytes>`` (NULL as ``~``)
in the order of ``FIELDS``; the time is whole microseconds since the Unix epoch.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

GENESIS = bytes(32)
FIELDS = (
    "seq",
    "id",
    "at",
    "actor",
    "action",
    "outcome",
    "target",
    "old_value",
    "new_value",
    "request_id",
    "client_address",
    "trace_id",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    """Whole microseconds since the epoch, exactly (no float)."""
    return (at - _EPOCH) // _MICRO


def canonical_json(value: Any) -> str | None:
    """The stored text of an old/new value: sorted keys, no spaces, ASCII only (so odd
    Unicode, lone surrogates and NUL survive as escapes); None stays None."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def encode(row: tuple) -> bytes:
    """The canonical bytes of one entry; `row` holds the FIELDS in order, `at` either a
    datetime or its microseconds."""
    seq, entry_id, at, *texts = row
    parts = ["v1"]
    for v in (str(seq), str(entry_id), str(at if isinstance(at, int) else micros(at)), *texts):
        if v is None:
            parts.append("~")
        else:  # the length in UTF-8 bytes
            parts.append(f"{len(v) if v.isascii() else len(v.encode())}:{v}")
    return "".join(parts).encode()


def link(previous: bytes, row: tuple) -> bytes:
    """The hash of the entry `row` chained after the entry whose hash is `previous`."""
    return link_encoded(previous, encode(row))


def link_encoded(previous: bytes, encoded: bytes) -> bytes:
    """The hash of an entry given its canonical encoding."""
    return hashlib.sha256(previous + encoded).digest()
