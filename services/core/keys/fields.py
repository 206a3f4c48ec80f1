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

``FieldKey`` is one data key version made ready once (its AES-GCM context and its header):
what a process's key cache keeps (core/keys/ring.py), so sealing or opening a field costs
the cipher and not its set-up. ``seal`` and ``unseal`` make one per call; both give the same
blobs and raise the same errors.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ontrackio.core.errors import FieldUnreadable, InvalidArgument

__all__ = [
    "FieldKey",
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
_PREFIX = struct.Struct(">BI")  # format, version: PREFIX_BYTES
_LENGTH = struct.Struct(">I")  # PART_LENGTH_BYTES


class InvalidFieldValue(InvalidArgument):
    """A value that cannot be stored encrypted (too large, not text PostgreSQL can hold)."""


def _part(text: str) -> bytes:
    """One part of ``encode_parts``: its UTF-8 length, then its UTF-8 bytes."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("text with a lone surrogate cannot be encoded") from None
    return _LENGTH.pack(len(raw)) + raw


def encode_parts(label: bytes, parts: Iterable[str]) -> bytes:
    """``label`` followed by each part as its UTF-8 length (PART_LENGTH_BYTES, big-endian)
    and its UTF-8 bytes: an injective encoding of the sequence (("a", "bc") and ("ab", "c")
    differ; so do sequences of different lengths).

    Raises InvalidArgument for a part that is not valid Unicode text (a lone surrogate):
    it has no UTF-8 form, and PostgreSQL could not have stored it.
    """
    return label + b"".join(_part(part) for part in parts)


def aad(tenant_id: str, table: str, column: str, row_id: str) -> bytes:
    """The associated data that binds a field value to its place (AAD_LABEL, then the four
    parts, each length-prefixed: ``encode_parts``).

    Raises InvalidFieldValue for an empty part (it would bind nothing: every row whose id
    were missing would share one AAD) and InvalidArgument for a lone surrogate.
    """
    if not (tenant_id and table and column and row_id):
        raise InvalidFieldValue("tenant id, table, column and row id must each be non-empty")
    place = _place(tenant_id, table, column)
    try:  # _part written out: this runs for every field sealed or opened
        raw = row_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("text with a lone surrogate cannot be encoded") from None
    return place + _LENGTH.pack(len(raw)) + raw


@functools.lru_cache(maxsize=4096)
def _place(tenant_id: str, table: str, column: str) -> bytes:
    """The AAD up to the row id: the same for every row of a tenant's column, so encoded
    once (names and ids only, nothing secret; a part that cannot be encoded raises and is
    not kept)."""
    return encode_parts(AAD_LABEL, (tenant_id, table, column))


def _prefix(version: int) -> bytes:
    return _PREFIX.pack(FORMAT_V1, version)


class FieldKey:
    """Data key `version`, ready to seal and open values in the format above.

    Raises ValueError for a key that is not KEY_BYTES long or a version outside
    MIN_VERSION..MAX_VERSION (a caller's bug, never a user's input). ``key`` is the
    plaintext data key; it is never shown (``repr`` names the version only). ``prefix`` is
    how every blob sealed under it begins (format and version, PREFIX_BYTES).
    """

    __slots__ = ("key", "version", "prefix", "_aead")

    def __init__(self, key: bytes, version: int):
        if len(key) != KEY_BYTES:
            raise ValueError(f"a field key is {KEY_BYTES} bytes")
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise ValueError(f"a key version is {MIN_VERSION} to {MAX_VERSION}")
        self.key = bytes(key)
        self.version = version
        self.prefix = _prefix(version)
        self._aead = AESGCM(self.key)

    def __repr__(self) -> str:
        return f"FieldKey(version={self.version})"

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """``seal`` under this key: raises InvalidFieldValue for a value over
        MAX_PLAINTEXT_BYTES."""
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise _too_large(plaintext)
        prefix, nonce = self.prefix, os.urandom(NONCE_BYTES)
        return prefix + nonce + self._aead.encrypt(nonce, plaintext, prefix + aad)

    def unseal(self, aad: bytes, blob: bytes) -> bytes:
        """``unseal`` with this key: FieldUnreadable with the causes of ``version_of``, or
        ``not_authentic`` (a blob of another version is one this key cannot open)."""
        if type(blob) is not bytes:  # a memoryview, a bytearray
            blob = bytes(blob)
        prefix = self.prefix
        if len(blob) < MIN_BLOB_BYTES or blob[:PREFIX_BYTES] != prefix:
            version_of(blob)  # a malformed blob: its own cause
            raise FieldUnreadable("not_authentic")
        try:
            return self._aead.decrypt(
                blob[PREFIX_BYTES:HEADER_BYTES], blob[HEADER_BYTES:], prefix + aad
            )
        except InvalidTag:
            raise FieldUnreadable("not_authentic") from None

    def seal_text(self, aad: bytes, text: str) -> bytes:
        """``seal_text`` under this key (``seal``'s last lines repeated, not called: this is
        the path of every encrypted text, and the call was ~0.1 µs of its ~1.1 µs)."""
        if "\x00" in text:
            raise InvalidFieldValue("an encrypted text must not contain NUL")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidFieldValue("an encrypted text must not contain a lone surrogate") from None
        if len(raw) > MAX_PLAINTEXT_BYTES:
            raise _too_large(raw)
        prefix, nonce = self.prefix, os.urandom(NONCE_BYTES)
        return prefix + nonce + self._aead.encrypt(nonce, raw, prefix + aad)

    def unseal_text(self, aad: bytes, blob: bytes) -> str:
        """``unseal_text`` with this key."""
        raw = self.unseal(aad, blob)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FieldUnreadable("not_text") from None
        if "\x00" in text:
            raise FieldUnreadable("not_text")
        return text


def _too_large(plaintext: bytes) -> InvalidFieldValue:
    return InvalidFieldValue(
        f"an encrypted value is at most {MAX_PLAINTEXT_BYTES} bytes ({len(plaintext)} given)"
    )


def seal(key: bytes, version: int, aad: bytes, plaintext: bytes) -> bytes:
    """`plaintext` encrypted under `key` (data key `version`) and bound to `aad`, in the
    format above, with a fresh random nonce.

    Raises InvalidFieldValue for a value over MAX_PLAINTEXT_BYTES; ValueError for a key
    that is not KEY_BYTES long or a version outside MIN_VERSION..MAX_VERSION (a caller's
    bug, never a user's input).
    """
    return FieldKey(key, version).seal(aad, plaintext)


def version_of(blob: bytes) -> int:
    """The data key version a sealed value names (which key to open it with).

    Raises FieldUnreadable: ``too_short`` (shorter than MIN_BLOB_BYTES), ``unknown_format``
    (first byte not FORMAT_V1), ``bad_version`` (outside MIN_VERSION..MAX_VERSION). Checks
    no key: only ``unseal`` proves the blob authentic.
    """
    if len(blob) < MIN_BLOB_BYTES:
        raise FieldUnreadable("too_short")
    form, version = _PREFIX.unpack_from(blob)
    if form != FORMAT_V1:
        raise FieldUnreadable("unknown_format")
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise FieldUnreadable("bad_version")
    return version


def unseal(key: bytes, aad: bytes, blob: bytes) -> bytes:
    """The value sealed in `blob`, when it was sealed under `key` with this `aad`.

    Raises FieldUnreadable: the causes of ``version_of``, or ``not_authentic`` when
    authentication fails (another row, column, table or tenant; another key; any byte
    altered, the version included). ValueError for a key that is not KEY_BYTES long.
    """
    return FieldKey(key, version_of(blob)).unseal(aad, blob)


def seal_text(key: bytes, version: int, aad: bytes, text: str) -> bytes:
    """`text` (UTF-8) sealed as ``seal`` does.

    Raises InvalidFieldValue for text holding NUL or a lone surrogate (neither the gateway
    nor PostgreSQL accepts them, so no such value can be read back as it was written), or
    whose UTF-8 form exceeds MAX_PLAINTEXT_BYTES.
    """
    return FieldKey(key, version).seal_text(aad, text)


def unseal_text(key: bytes, aad: bytes, blob: bytes) -> str:
    """The text sealed in `blob` (``seal_text``).

    Raises FieldUnreadable as ``unseal`` does, or ``not_text`` for an authentic value that
    is not UTF-8 without NUL (sealed as bytes, not by ``seal_text``).
    """
    return FieldKey(key, version_of(blob)).unseal_text(aad, blob)
