"""Recovery codes: single-use codes a user keeps for when no other factor is at hand. Pure:
no I/O.

A user gets ``COUNT`` (10) codes at once, each shown as 3 groups of 4 characters joined by
hyphens (``k7m2-xq9r-4hbd``), drawn with ``secrets`` from an alphabet without the characters
people confuse (no 0/o, no 1/l/i): 12 characters of 31 symbols, about 59.5 bits each. As typed
back, a code is read without regard to case, spaces or hyphens (``normalise``); that
canonical form (12 lower-case characters) is what is hashed. The store keeps only
``code_hash``, an HMAC-SHA256 under a server-side key (``derive_key``) and marks a code used
when it is spent; which codes are left is the store's business.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

from ontrackio.identity.errors import InvalidRecoveryCode

COUNT = 10
# Digits 2-9 and the lower-case letters without i, l and o: 8 + 23 = 31 symbols.
ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
GROUPS = 3
GROUP_LENGTH = 4
SEPARATOR = "-"
CODE_LENGTH = GROUPS * GROUP_LENGTH
# 12 * log2(31) = 59.45 bits: about 60, far beyond online guessing and, keyed, offline too.
ENTROPY_BITS = CODE_LENGTH * math.log2(len(ALPHABET))
# Characters a typed code may take before any parsing: 14 as shown, and room for spacing.
MAX_INPUT = 64

_SYMBOLS = frozenset(ALPHABET)
_IGNORED = str.maketrans("", "", " -")
_PURPOSE = b"ontrack mfa recovery codes v1"


def _format(canonical: str) -> str:
    return SEPARATOR.join(
        canonical[i : i + GROUP_LENGTH] for i in range(0, CODE_LENGTH, GROUP_LENGTH)
    )


def new_codes(count: int = COUNT) -> list[str]:
    """``count`` distinct new codes, as shown to the user (``xxxx-xxxx-xxxx``, lower case).

    Raises ValueError when ``count`` is less than 1.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    canonical: set[str] = set()
    codes: list[str] = []
    while len(codes) < count:
        code = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
        if code not in canonical:  # a repeat is a 1 in 2**59 event, but distinct is promised
            canonical.add(code)
            codes.append(_format(code))
    return codes


def normalise(text: str) -> str:
    """The canonical form of a typed code: its CODE_LENGTH characters in lower case, without
    the spaces and hyphens (anywhere) that were ignored. The one spelling that is hashed.

    Case is folded for ASCII only: a non-ASCII character (a full-width letter, the Kelvin
    sign that lower-cases to ``k``) is refused, not folded.

    Raises InvalidRecoveryCode (INVALID_ARGUMENT) when ``text`` is longer than MAX_INPUT
    (checked before anything else), holds a character outside the alphabet after folding
    (``0``, ``o``, ``1``, ``l``, ``i`` included), or does not have CODE_LENGTH characters
    left; the message never echoes the input.
    """
    message = (
        f"A recovery code is {CODE_LENGTH} letters and digits, like "
        f"{_format(ALPHABET[:CODE_LENGTH])}."
    )
    if not isinstance(text, str) or len(text) > MAX_INPUT or not text.isascii():
        raise InvalidRecoveryCode(message)
    canonical = text.translate(_IGNORED).lower()
    if len(canonical) != CODE_LENGTH or not _SYMBOLS.issuperset(canonical):
        raise InvalidRecoveryCode(message)
    return canonical


def code_hash(key: bytes, code: str) -> bytes:
    """What the store keeps of a code: HMAC-SHA256 of its canonical form under ``key`` (from
    ``derive_key``), so any spelling of one code has one hash, which the store can look up.

    A keyed hash, not a password hash (argon2, signin/passwords.py): a password hash is slow
    to make guessing a human-chosen secret costly, but these codes are ~59.5 bits from
    ``secrets``, too many to search even at HMAC speed, and the key is not in the database,
    so a copy of the database alone lets nobody test a guess at all. Being deterministic, the
    hash also finds the code in one look-up instead of one slow check per stored code.

    Raises InvalidRecoveryCode as ``normalise`` does.
    """
    return hmac.new(key, normalise(code).encode("ascii"), hashlib.sha256).digest()


def derive_key(root: bytes) -> bytes:
    """The recovery-code key: HMAC-SHA256 of a fixed label under ``root`` (a server-side
    key such as identity's ``token_hash_key``), so the codes' hashes are another purpose
    than the tokens, sessions and invitation links keyed from the same root."""
    return hmac.new(root, _PURPOSE, hashlib.sha256).digest()
