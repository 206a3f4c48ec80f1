"""The tenant's MFA policy and what a sign-in needs under it (pure rules, no database).

The policy is ``off``, ``admins`` (owners and admins must use MFA) or ``everyone``. When it
requires MFA of a user, a sign-in proves it one of two ways:

- the IdP says so: the assertion's evidence (SAML ``AuthnContextClassRef`` values, OIDC
  ``amr`` and ``acr`` values: ``ExternalIdentity.mfa_evidence``) holds a value the tenant
  counts for that kind of IdP (``accepted_evidence``: the tenant's list, else
  ``DEFAULT_EVIDENCE``); the session's ``mfa_source`` is then ``idp``;
- or locally: the session opens at the ``step_up`` stage, able to do nothing but present a
  second factor of ours (TOTP, a passkey, a recovery code), and becomes ``full`` with
  ``mfa_source = local`` when it does (NIS2 Art. 21(2)(j): SAML SSO falls back to TOTP when
  the IdP's MFA assertion is missing).

A user the policy covers who has no factor yet opens at the ``enrol`` stage (enrolment
only) while the tenant's enrolment grace period runs (``grace_until``: set when the policy
starts to require MFA of more people); after it, such a sign-in is refused
(``MfaEnrolmentOverdue``) until an admin resets the user, so that "MFA for admins" is not
quietly "MFA when they get round to it". A passkey sign-in is MFA by itself (possession
and user verification).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from ontrackio.identity.errors import InvalidMfaPolicy, MfaEnrolmentOverdue
from ontrackio.identity.roles import rules as roles

OFF, ADMINS, EVERYONE = "off", "admins", "everyone"
POLICIES = (OFF, ADMINS, EVERYONE)
COVERED_BY_ADMINS = frozenset({roles.OWNER, roles.ADMIN})

# Session stages (sessions.stage).
FULL, STEP_UP, ENROL = "full", "step_up", "enrol"
STAGES = (FULL, STEP_UP, ENROL)

# Passkey user verification (WebAuthn): "required" (PIN or biometric every time) or
# "preferred" (asked for, not insisted on; a step-up still proves possession).
UV_REQUIRED, UV_PREFERRED = "required", "preferred"
USER_VERIFICATION = (UV_REQUIRED, UV_PREFERRED)

DEFAULT_GRACE_DAYS = 14
ENROLMENT_OVERDUE = "mfa-enrolment-overdue"  # the refusal's reason (audit trail)
MAX_GRACE_DAYS = 90
MAX_EVIDENCE_VALUES = 20
MAX_EVIDENCE_CHARS = 300

# IdP kinds, as ExternalIdentity.method names them.
SAML = "saml"
OIDC_KINDS = ("oidc:google", "oidc:entra", "oidc:oidc")
IDP_KINDS = (SAML, *OIDC_KINDS)

# What counts as MFA when the tenant has not said: values the IdPs document for a
# multi-factor sign-in. Entra sends "multipleauthn" in SAML and "mfa" in amr; REFEDS MFA is
# the research federations' profile; RFC 8176 amr values for possession factors.
ENTRA_MULTIPLEAUTHN = "http://schemas.microsoft.com/claims/multipleauthn"
REFEDS_MFA = "https://refeds.org/profile/mfa"
DEFAULT_EVIDENCE: Mapping[str, tuple[str, ...]] = {
    SAML: (ENTRA_MULTIPLEAUTHN, REFEDS_MFA),
    "oidc:google": ("mfa", "hwk", "otp"),
    "oidc:entra": ("mfa",),
    "oidc:oidc": ("mfa", "hwk", "otp", REFEDS_MFA),
}


def validate_policy(value: str) -> str:
    if value not in POLICIES:
        raise InvalidMfaPolicy(f"mfa_policy must be one of {', '.join(POLICIES)}")
    return value


def validate_user_verification(value: str) -> str:
    if value not in USER_VERIFICATION:
        raise InvalidMfaPolicy(
            f"passkey_user_verification must be one of {', '.join(USER_VERIFICATION)}"
        )
    return value


def covers_more(old: str, new: str) -> bool:
    """Whether policy ``new`` requires MFA of people ``old`` did not (a new grace period)."""
    return POLICIES.index(new) > POLICIES.index(old)


def validate_grace_days(value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_GRACE_DAYS:
        raise InvalidMfaPolicy(f"enrolment_grace_days must be 0 to {MAX_GRACE_DAYS}")
    return value


def validate_evidence(kind: str, values: Iterable[str]) -> tuple[str, ...]:
    """The tenant's accepted evidence for one IdP kind: printable, bounded, no duplicates."""
    if kind not in IDP_KINDS:
        raise InvalidMfaPolicy(f"evidence is given per IdP kind: {', '.join(IDP_KINDS)}")
    out = tuple(dict.fromkeys(v.strip() for v in values))
    if len(out) > MAX_EVIDENCE_VALUES:
        raise InvalidMfaPolicy(f"at most {MAX_EVIDENCE_VALUES} evidence values per IdP kind")
    for v in out:
        if not v or len(v) > MAX_EVIDENCE_CHARS or not v.isprintable():
            raise InvalidMfaPolicy(
                f"an evidence value is 1 to {MAX_EVIDENCE_CHARS} printable characters"
            )
    return out


def requires_mfa(policy: str, user_roles: Iterable[str]) -> bool:
    """Whether the policy requires MFA of a user holding ``user_roles``."""
    if policy == EVERYONE:
        return True
    if policy == ADMINS:
        return bool(COVERED_BY_ADMINS.intersection(user_roles))
    return False


def accepted_evidence(kind: str, tenant: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """What counts as MFA from this kind of IdP: the tenant's list when it set one (an
    empty list: nothing counts, always step up), else the defaults."""
    if kind in tenant:
        return frozenset(tenant[kind])
    return frozenset(DEFAULT_EVIDENCE.get(kind, ()))


def idp_proves_mfa(kind: str, evidence: Iterable[str], tenant: Mapping[str, Iterable[str]]) -> bool:
    return not accepted_evidence(kind, tenant).isdisjoint(evidence)


def matching_evidence(
    kind: str, evidence: Iterable[str], tenant: Mapping[str, Iterable[str]]
) -> str:
    """The first of the assertion's ``evidence`` values that counts as MFA from this kind of
    IdP ("" when none does): recorded as the session's factor, with ``mfa_source = idp``."""
    accepted = accepted_evidence(kind, tenant)
    return next((v for v in evidence if v in accepted), "")


def stage_at_sign_in(
    policy: str,
    user_roles: Iterable[str],
    *,
    mfa_proven: bool,
    has_factor: bool,
    grace_until: datetime | None,
    now: datetime,
) -> str:
    """The stage a new session opens at (``FULL``, ``STEP_UP`` or ``ENROL``); raises
    MfaEnrolmentOverdue for a covered user with no factor once the grace period is over.
    ``mfa_proven``: the sign-in itself proved MFA (accepted IdP evidence, a passkey)."""
    if mfa_proven or not requires_mfa(policy, user_roles):
        return FULL
    if has_factor:
        return STEP_UP
    if grace_until is not None and now < grace_until:
        return ENROL
    raise MfaEnrolmentOverdue(ENROLMENT_OVERDUE)
