"""Who may sign in to a tenant by SSO: the allowed-domain rule and its named exceptions.

``decide`` is a pure function of its inputs (no database, no clock of its own): it takes the
email the IdP asserted, the tenant's verified domains and the person's collaborator
exception if they have one, with the time of the sign-in, and gives an ``Admission``.
``check`` is what sign-in calls (``signin.sso.complete``): it looks the exception up in the
tenant's database and decides.

The rule, in order:

1. No email, or one whose domain could never match (``domains.email_domain``): refused,
   ``email-missing`` / ``email-invalid``.
2. The email's domain is one of the verified domains, exactly: allowed, ``domain-verified``.
   A subdomain is not its parent: ``sales.example.com`` is allowed only once verified
   itself (whoever controls ``example.com``'s DNS may not control who gets addresses under
   every subdomain, and the other way round).
3. An exception for this very address (case ignored) whose expiry is after ``now``:
   allowed, ``named-collaborator``. One that has expired: refused,
   ``collaborator-expired`` — at once, with no sweep in between.
4. Otherwise refused, ``domain-not-allowed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.domain import collaborators as collaborator_rules
from ontrackio.identity.domain import domains as domain_rules

DOMAIN_VERIFIED = "domain-verified"
NAMED_COLLABORATOR = "named-collaborator"
EMAIL_MISSING = "email-missing"
EMAIL_INVALID = "email-invalid"
DOMAIN_NOT_ALLOWED = "domain-not-allowed"
COLLABORATOR_EXPIRED = "collaborator-expired"
REFUSALS = (EMAIL_MISSING, EMAIL_INVALID, DOMAIN_NOT_ALLOWED, COLLABORATOR_EXPIRED)


@dataclass(frozen=True)
class Collaborator:
    """A named exception as the rule sees it (``sso.collaborators`` reads it)."""

    id: str
    address: str
    expires_at: datetime


@dataclass(frozen=True)
class Admission:
    """The decision: ``reason`` is one of the constants above (a refusal's is what
    sign-in reports, ``ontrack-reason``). ``domain``: the email's domain as compared."""

    allowed: bool
    reason: str
    by_collaborator: bool = False
    collaborator_id: str = ""
    domain: str = ""


def decide(
    email: str,
    verified_domains: Iterable[str],
    collaborator: Collaborator | None,
    *,
    now: datetime,
) -> Admission:
    """Apply the rule (module docstring). ``verified_domains`` are the tenant's verified
    domains as the registry stores them; ``collaborator`` the exception found for
    ``email`` (expired or not: the expiry is judged here, against ``now``), or None.
    ``now`` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not isinstance(email, str) or not email.strip():
        return Admission(False, EMAIL_MISSING)
    email = email.strip()
    domain = domain_rules.email_domain(email)
    if domain is None:
        return Admission(False, EMAIL_INVALID)
    if domain in {d.strip().lower() for d in verified_domains}:
        return Admission(True, DOMAIN_VERIFIED, domain=domain)
    if collaborator is not None and collaborator_rules.same_address(collaborator.address, email):
        if collaborator.expires_at > now:
            return Admission(True, NAMED_COLLABORATOR, True, collaborator.id, domain)
        return Admission(False, COLLABORATOR_EXPIRED, False, collaborator.id, domain)
    return Admission(False, DOMAIN_NOT_ALLOWED, domain=domain)


def check(u: UnitOfWork, email: str, verified_domains: Iterable[str], now: datetime) -> Admission:
    """``decide`` with the exception the tenant's database holds for ``email`` (expired or
    not), in ``u``'s transaction: the call sign-in makes."""
    from ontrackio.identity.sso import collaborators  # it imports Collaborator from here

    return decide(email, verified_domains, collaborators.find(u, email), now=now)
