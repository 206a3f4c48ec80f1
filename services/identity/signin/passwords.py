"""Password rules and hashing for local sign-in. Pure: no I/O beyond reading the bundled list.

Rules (docs/local-signin.md says why these):

- A password is Unicode, normalised to NFKC before anything else (so a full-width or
  composed spelling is the same password on every device), and counted in code points
  after that: at least ``MIN_LENGTH`` (12, OWASP ASVS 4.0 2.1.1), at most ``MAX_LENGTH``
  (128, ASVS 2.1.2). Spaces count; control characters are refused (they are never typed).
- It must not be a known breached password: the bundled list (``data/common-passwords.txt``,
  the 10,000 most common passwords of SecLists, see ``data/SOURCE.md``), compared without
  regard to case, also after stripping digits and punctuation from either end
  (``Password123!`` is ``password``); a string shorter than 12 repeated (``dragondragon``,
  ``aaaaaaaaaaaa``) counts as one too; and,
  when configured, the Have I Been Pwned range API (``breach.py``).
- It must not be the account's email or its local part.

Hashing is argon2id with the parameters below (OWASP Password Storage Cheat Sheet, its
second configuration: 19 MiB, 2 passes, 1 lane; ~60 ms here). ``needs_rehash`` says when a
stored hash was made with other parameters; sign-in then stores a new hash (``rehash on
login``). Unknown accounts are checked against ``DUMMY_HASH``, so they cost the same time.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ontrackio.core.errors import InvalidArgument

MIN_LENGTH = 12
MAX_LENGTH = 128
# Bytes a password may take before any parsing: 128 code points of at most 4 bytes each.
MAX_BYTES = 4 * MAX_LENGTH

ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
ARGON2_HASH_BYTES = 32
ARGON2_SALT_BYTES = 16

COMMON_LIST = Path(__file__).with_name("data") / "common-passwords.txt"
_DECORATION = re.compile(r"^[\W\d_]+|[\W\d_]+$")

# Which rule refused a password (PasswordRefused.rule).
TOO_SHORT = "too-short"
TOO_LONG = "too-long"
CONTROL_CHARACTERS = "control-characters"
BREACHED = "breached"
LIKE_EMAIL = "like-email"


class PasswordRefused(InvalidArgument):
    """The new password breaks a rule; the message says which, never echoing the password."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def normalise(password: str) -> str:
    """NFKC: the one spelling every check and the hash see."""
    return unicodedata.normalize("NFKC", password)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list, case-folded (read once per process)."""
    text = COMMON_LIST.read_text(encoding="utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines() if line.strip())


def _is_common(password: str) -> bool:
    listed = common_passwords()
    folded = password.casefold()
    if folded in listed:
        return True
    core = _DECORATION.sub("", folded)
    if core != folded and core in listed:
        return True
    # A short string repeated: "aaaaaaaaaaaa", "abcabcabcabc", "dragondragon".
    for size in range(1, min(MIN_LENGTH, len(folded) // 2 + 1)):
        if len(folded) % size == 0 and folded[:size] * (len(folded) // size) == folded:
            return True
    return False


def check_new(password: str, *, email: str = "") -> str:
    """The normalised password if it may be set, else PasswordRefused (INVALID_ARGUMENT)
    naming the rule. The breached-password API (breach.py) is asked separately."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise PasswordRefused(TOO_LONG, f"A password can have at most {MAX_LENGTH} characters.")
    pw = normalise(password)
    if len(pw) > MAX_LENGTH:
        raise PasswordRefused(TOO_LONG, f"A password can have at most {MAX_LENGTH} characters.")
    if len(pw) < MIN_LENGTH:
        raise PasswordRefused(TOO_SHORT, f"A password needs at least {MIN_LENGTH} characters.")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in pw):
        raise PasswordRefused(CONTROL_CHARACTERS, "A password cannot hold control characters.")
    folded = pw.casefold()
    address = email.strip().casefold()
    if address and folded in (address, address.partition("@")[0]):
        raise PasswordRefused(LIKE_EMAIL, "A password cannot be your email address.")
    if _is_common(pw):
        raise PasswordRefused(
            BREACHED, "This password is among the most common ones in breaches; choose another."
        )
    return pw


@dataclass(frozen=True)
class Hasher:
    """argon2id with the module's parameters (tests may build one with cheaper ones to show
    that a changed parameter triggers a rehash)."""

    time_cost: int = ARGON2_TIME_COST
    memory_kib: int = ARGON2_MEMORY_KIB
    parallelism: int = ARGON2_PARALLELISM

    @functools.cached_property
    def _ph(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
            hash_len=ARGON2_HASH_BYTES,
            salt_len=ARGON2_SALT_BYTES,
            type=Type.ID,
        )

    def hash(self, password: str) -> str:
        """The PHC string of the normalised password."""
        return self._ph.hash(normalise(password))

    def verify(self, stored: str, password: str) -> bool:
        """True when ``password`` (normalised here) matches ``stored``; False for a mismatch,
        a malformed hash, or a password longer than any that could have been set."""
        too_long = len(password.encode("utf-8", "surrogatepass")) > MAX_BYTES
        try:  # a password too long still costs one check: the same time as any other
            if too_long:
                self._ph.verify(DUMMY_HASH, "x")
            return self._ph.verify(stored, normalise(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._ph.check_needs_rehash(stored)


HASHER = Hasher()
# Checked for unknown accounts, so that "no such user" costs what a wrong password costs.
DUMMY_HASH = HASHER.hash("dummy password, never the hash of an account")
