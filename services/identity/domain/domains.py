"""Domain names a tenant claims, and the DNS challenge that proves a claim.

Two readings of a name, on purpose:

- ``normalise`` reads what an admin types (``Bücher.Example.``, full-width letters): UTS #46
  mapping, then IDNA 2008, lower case, no trailing dot. The result is what the TXT record
  is looked up under and what is stored, so the tenant proves control of exactly the name
  that routes and admits.
- ``email_domain`` reads the domain of an address an IdP asserted, strictly: ASCII letters
  are lower-cased, anything else must already be a valid IDNA 2008 label. No look-alike is
  mapped onto the domain it resembles (``ｅｘａｍｐｌｅ.com``, the Kelvin sign for ``k``):
  such an address matches no verified domain.

Every name either function returns is one the registry's own parser
(``tenants.normalise_domain``) maps to itself, so routing and admission agree.
"""

from __future__ import annotations

import re

import idna

from ontrackio.identity.domain.tenants import DOMAIN_RE
from ontrackio.identity.errors import InvalidDomain

# Read before any other work, so a huge input costs nothing: a name is at most 253
# characters; its Unicode spelling may be longer than its A-labels, never 4 times over.
MAX_INPUT_CHARS = 1024
CHALLENGE_LABEL = "_ontrack-challenge"
CHALLENGE_PREFIX = "ontrack-verify="
CHALLENGE_TYPE = "TXT"
# A challenge token as the registry generates it (control migration 0006): 64 hex digits.
TOKEN_RE = re.compile(r"[0-9a-f]{64}\Z")
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")


def _checked(ascii_name: str, original: str) -> str:
    """``ascii_name`` if it is a routable host name (the registry's rule), else InvalidDomain."""
    if not DOMAIN_RE.match(ascii_name):
        raise InvalidDomain(f"invalid domain {_shown(original)}: {_why(ascii_name)}")
    return ascii_name


def _why(name: str) -> str:
    if "" in name.split("."):
        return "a label is empty"
    if len(name) > 253:
        return "longer than 253 characters"
    labels = name.split(".")
    if len(labels) < 2:
        return "a domain has at least two labels (example.com)"
    if any(len(label) > 63 for label in labels):
        return "a label is longer than 63 characters"
    return "not a host name (letters, digits and inner hyphens; the last label not numeric)"


def _shown(text: str) -> str:
    """The input as an error message may quote it: printable, bounded."""
    cut = text[:80]
    return repr(cut) + ("…" if len(text) > 80 else "")


def normalise(text: str) -> str:
    """The domain an admin means by ``text``: A-labels, lower case, no trailing dot.

    Raises InvalidDomain (INVALID_ARGUMENT) naming the problem for anything else: empty,
    over-long, spaces or control characters (NUL) anywhere, an empty label, an underscore or
    ``*``, a label over 63 characters, a name over 253, a single label, a numeric last label
    (an IPv4 address), an invalid A-label (``xn--zz``) or a code point IDNA 2008 disallows.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidDomain("domain is required")
    if len(text) > MAX_INPUT_CHARS:
        raise InvalidDomain(f"domain is longer than {MAX_INPUT_CHARS} characters")
    name = text.strip(" \t")
    if _SPACE_OR_CONTROL.search(name):
        raise InvalidDomain(
            f"invalid domain {_shown(text)}: spaces and control characters are not allowed"
        )
    name = name.removesuffix(".")  # the absolute form names the same domain
    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=True, transitional=False)
        idna.decode(ascii_name)  # every A-label must decode (xn--zz does not)
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidDomain(f"invalid domain {_shown(text)}: {_idna_reason(exc)}") from None
    return _checked(ascii_name.decode("ascii"), text)


def _idna_reason(exc: Exception) -> str:
    text = str(exc)
    if "Empty Label" in text or "Empty domain" in text:
        return "a label is empty"
    if "too long" in text:
        return "a label or the name is too long"
    if "hyphen" in text:
        return "a label starts or ends with a hyphen, or has hyphens in places 3 and 4"
    if "A-label" in text:
        return "an xn-- label is not valid punycode"
    return "a character that is not allowed in a domain name"


def display_name(domain: str) -> str:
    """The normalised ``domain`` with its IDN labels in Unicode (for people, never compared)."""
    try:
        return idna.decode(domain)
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain


def email_domain(email: str) -> str | None:
    """The domain of ``email`` as admission compares it, or None when the address has no
    domain that could ever match a verified one (see the module docstring)."""
    if not isinstance(email, str) or len(email) > 320 or email.count("@") != 1:
        return None
    domain = email.rsplit("@", 1)[1].translate(_ASCII_UPPER)
    if not domain or _SPACE_OR_CONTROL.search(domain):
        return None
    labels = []
    for label in domain.removesuffix(".").split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(idna.alabel(label).decode("ascii"))
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    name = ".".join(labels)
    if not DOMAIN_RE.match(name):
        return None
    try:
        idna.decode(name)  # an ASCII label spelled xn-- must be valid too
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return name


def challenge_name(domain: str) -> str:
    """Where the tenant publishes its TXT record for ``domain`` (normalised)."""
    return f"{CHALLENGE_LABEL}.{domain}"


def challenge_value(token: str) -> str:
    """The TXT record's value for the challenge ``token``."""
    return f"{CHALLENGE_PREFIX}{token}"
