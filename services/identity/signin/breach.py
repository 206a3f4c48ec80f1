"""The Have I Been Pwned range API (k-anonymity): is a password in a known breach?

Only the first five hex digits of the password's SHA-1 leave the process; the API answers
every suffix of that range with its count (``SUFFIX:COUNT`` lines, padded with zero counts
when ``Add-Padding`` is asked), and the match is made here. Off unless
``ONTRACK_PASSWORD_BREACH_API_URL`` names the API (e.g. ``https://api.pwnedpasswords.com``).

An API that cannot be asked (down, slow, an answer that does not parse) does not block the
person: the bundled list (passwords.py) has been checked already, the failure is counted
(``ontrack_password_breach_checks_total{outcome="unavailable"}``) and logged without the
password or its hash.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import urllib.request
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger(__name__)

BREACH_CHECKS = Counter(
    "ontrack_password_breach_checks",
    "Breached-password API checks of new passwords.",
    ["outcome"],  # clean | breached | unavailable
)
MAX_RESPONSE_BYTES = 2 * 1024 * 1024  # a range holds ~1,000 suffixes (~40 kB); padded, more
_LINE = re.compile(r"([0-9A-F]{35}):([0-9]+)\Z")


class RangeUnreadable(Exception):
    """The range answer is not ``SUFFIX:COUNT`` lines."""


def sha1_range(password: str) -> tuple[str, str]:
    """(the five-digit prefix sent, the 35-digit suffix kept) of the password's SHA-1."""
    digest = hashlib.sha1(password.encode("utf-8"), usedforsecurity=False).hexdigest().upper()
    return digest[:5], digest[5:]


def count_in_range(body: str, suffix: str) -> int:
    """How often ``suffix`` was seen according to a range answer (0: never); RangeUnreadable
    for an answer with a line that is not ``SUFFIX:COUNT``."""
    found = 0
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _LINE.match(line.upper())
        if m is None:
            raise RangeUnreadable("not a range answer")
        if m.group(1) == suffix:
            found = int(m.group(2))
    return found


@dataclass(frozen=True)
class BreachApi:
    """The range API at ``url`` (no trailing slash needed), asked with ``timeout`` seconds."""

    url: str
    timeout: float = 2.0

    def times_seen(self, password: str) -> int | None:
        """How often the (normalised) password appears in breaches; None when the API could
        not be asked or answered something unreadable."""
        prefix, suffix = sha1_range(password)
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/range/{prefix}",
            headers={"Add-Padding": "true", "User-Agent": "ontrackio-identity"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise RangeUnreadable("range answer too large")
            seen = count_in_range(body.decode("utf-8"), suffix)
        except (OSError, http.client.HTTPException, UnicodeDecodeError, RangeUnreadable) as exc:
            BREACH_CHECKS.labels("unavailable").inc()
            log.warning("breached-password API not usable: %s", type(exc).__name__)
            return None
        BREACH_CHECKS.labels("breached" if seen else "clean").inc()
        return seen
