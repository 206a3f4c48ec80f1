"""The ciphertext format of one encrypted field value. Pure: no I/O but the random nonce.

A value is sealed with AES-256-GCM under a tenant's data key (its version named in the
blob) and associated data that binds it to its place: tenant id, table, column and row id
(``aad``). A ciphertext copied to another row, column, table or tenant therefore fails to
decrypt, as does one altered in any byte or opened with another key.

A sealed value reads (the layout outlives a release: stored values are read back years
later)::

    FORMAT_V1 (1 byte) | version (4 bytes, big-endian) | nonce (12 bytes) | ciphertext | tag (16)

The first five bytes (format and version) are authenticated too: GCM's associated data is
``blob[:5] + aad``. Nonces are random (96 bits), so one data key must seal fewer than 2**32
values (NIST SP 800-38D); tenants' keys are rotated long before that.

``encode_parts`` is the one canonical encoding of a labelled sequence of texts (each part
length-prefixed), used here for ``aad`` and by the local key provider for encryption
contexts: no two different sequences encode alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ontrackio.core.errors import FieldUnreadable, InvalidArgument

__all__ = [
    "FieldUnreadable",
    "InvalidFieldValue",
    "aad",
    "encode_parts",
    "seal",
    "seal_text",
    "unseal",
    "unseal_text",
    "version_of",
]

FORMAT_V1 = 0x01
KEY_BYTES = 32  # AES-256
VERSION_BYTES = 4
NONCE_BYTES = 12  # 96 bits, GCM's native nonce size
TAG_BYTES = 16
PREFIX_BYTES = 1 + VERSION_BYTES  # format and version: authenticated with the AAD
HEADER_BYTES = PREFIX_BYTES + NONCE_BYTES
MIN_BLOB_BYTES = HEADER_BYTES + TAG_BYTES  # an empty value
MIN_VERSION = 1
MAX_VERSION = 2**31 - 1  # fits PostgreSQL's integer, and the proto's int32
MAX_PLAINTEXT_BYTES = 64 * 1024
# Length prefix of each part in encode_parts: 4 bytes, big-endian.
PART_LENGTH_BYTES = 4
AAD_LABEL = b"ontrack:field:v1"


class InvalidFieldValue(InvalidArgument):
    """A value that cannot be stored encrypted (too large, not text PostgreSQL can hold)."""


def encode_parts(label: bytes, parts: Iterable[str]) -> bytes:
    """``label`` followed by each part as its UTF-8 length (PART_LENGTH_BYTES, big-endian)
    and its UTF-8 bytes: an injective encoding of the sequence (("a", "bc") and ("ab", "c")
    differ; so do sequences of different lengths).

    Raises InvalidArgument for a part that is not valid Unicode text (a lone surrogate):
    it has no UTF-8 form, and PostgreSQL could not have stored it.
    """
    out = [label]
    for part in parts:
        try:
            raw = part.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument("text with a lone surrogate cannot be encoded") from None
        out += [len(raw).to_bytes(PART_LENGTH_BYTES, "big"), raw]
    return b"".join(out)


def aad(tenant_id: str, table: str, column: str, row_id: str) -> bytes:
    """The associated data that binds a field value to its place (AAD_LABEL, then the four
    parts, each length-prefixed: ``encode_parts``).

    Raises InvalidFieldValue for an empty part (it would bind nothing: every row whose id
    were missing would share one AAD) and InvalidArgument for a lone surrogate.
    """
    parts = (tenant_id, table, column, row_id)
    if not all(parts):
        raise InvalidFieldValue("tenant id, table, column and row id must each be non-empty")
    return encode_parts(AAD_LABEL, parts)


def _prefix(version: int) -> bytes:
    return bytes([FORMAT_V1]) + version.to_bytes(VERSION_BYTES, "big")


def seal(key: bytes, version: int, aad: bytes, plaintext: bytes) -> bytes:
    """`plaintext` encrypted under `key` (data key `version`) and bound to `aad`, in the
    format above, with a fresh random nonce.

    Raises InvalidFieldValue for a value over MAX_PLAINTEXT_BYTES; ValueError for a key
    that is not KEY_BYTES long or a version outside MIN_VERSION..MAX_VERSION (a caller's
    bug, never a user's input).
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"a field key is {KEY_BYTES} bytes")
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"a key version is {MIN_VERSION} to {MAX_VERSION}")
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise InvalidFieldValue(
            f"an encrypted value is at most {MAX_PLAINTEXT_BYTES} bytes ({len(plaintext)} given)"
        )
    prefix = _prefix(version)
    nonce = os.urandom(NONCE_BYTES)
    return prefix + nonce + AESGCM(key).encrypt(nonce, plaintext, prefix + aad)


def version_of(blob: bytes) -> int:
    """The data key version a sealed value names (which key to open it with).

    Raises FieldUnreadable: ``too_short`` (shorter than MIN_BLOB_BYTES), ``unknown_format``
    (first byte not FORMAT_V1), ``bad_version`` (outside MIN_VERSION..MAX_VERSION). Checks
    no key: only ``unseal`` proves the blob authentic.
    """
    if len(blob) < MIN_BLOB_BYTES:
        raise FieldUnreadable("too_short")
    if blob[0] != FORMAT_V1:
        raise FieldUnreadable("unknown_format")
    version = int.from_bytes(blob[1:PREFIX_BYTES], "big")
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise FieldUnreadable("bad_version")
    return version


def unseal(key: bytes, aad: bytes, blob: bytes) -> bytes:
    """The value sealed in `blob`, when it was sealed under `key` with this `aad`.

    Raises FieldUnreadable: the causes of ``version_of``, or ``not_authentic`` when
    authentication fails (another row, column, table or tenant; another key; any byte
    altered, the version included). ValueError for a key that is not KEY_BYTES long.
    """
    version_of(blob)
    if len(key) != KEY_BYTES:
        raise ValueError(f"a field key is {KEY_BYTES} bytes")
    blob = bytes(blob)
    nonce = blob[PREFIX_BYTES:HEADER_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[HEADER_BYTES:], blob[:PREFIX_BYTES] + aad)
    except InvalidTag:
        raise FieldUnreadable("not_authentic") from None


def seal_text(key: bytes, version: int, aad: bytes, text: str) -> bytes:
    """`text` (UTF-8) sealed as ``seal`` does.

    Raises InvalidFieldValue for text holding NUL or a lone surrogate (neither the gateway
    nor PostgreSQL accepts them, so no such value can be read back as it was written), or
    whose UTF-8 form exceeds MAX_PLAINTEXT_BYTES.
    """
    if "\x00" in text:
        raise InvalidFieldValue("an encrypted text must not contain NUL")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFieldValue("an encrypted text must not contain a lone surrogate") from None
    return seal(key, version, aad, raw)


def unseal_text(key: bytes, aad: bytes, blob: bytes) -> str:
    """The text sealed in `blob` (``seal_text``).

    Raises FieldUnreadable as ``unseal`` does, or ``not_text`` for an authentic value that
    is not UTF-8 without NUL (sealed as bytes, not by ``seal_text``).
    """
    raw = unseal(key, aad, blob)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldUnreadable("not_text") from None
    if "\x00" in text:
        raise FieldUnreadable("not_text")
    return text
