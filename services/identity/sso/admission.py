"""Who may sign in to a tenant through SSO: an address at one of the tenant's verified
domains, or a named external collaborator whose exception has not expired.

(The domains part of issue 12 extends this with the collaborators' register.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ontrackio.core.db.tenantdb import UnitOfWork

DOMAIN_NOT_ALLOWED = "domain-not-allowed"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    by_collaborator: bool = False


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].strip().rstrip(".").lower()


def by_domain(email: str, verified_domains: Sequence[str]) -> Decision:
    """Pure: allowed when the address's domain is exactly one of ``verified_domains``."""
    domain = domain_of(email)
    allowed = bool(domain) and domain in {d.lower().rstrip(".") for d in verified_domains}
    return Decision(allowed, "" if allowed else DOMAIN_NOT_ALLOWED)


def check(u: UnitOfWork, email: str, verified_domains: Sequence[str], now: datetime) -> Decision:
    return by_domain(email, verified_domains)
