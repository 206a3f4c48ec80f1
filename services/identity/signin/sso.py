"""From an identity the tenant's IdP proved (``ExternalIdentity``) to a session.

Order: the email's domain must be one of the tenant's verified domains, or the address a
named external collaborator whose exception has not expired (``admit``) → the account is
found by (issuer, subject) → failing that, an existing user with that verified email is
linked to the IdP account once (an invited user's first SSO sign-in), unless some IdP
account is linked to the user already, or the user is a break-glass owner → failing that, a
user is created just in time when the tenant's policy allows it, with the default role
(never more: roles come from an admin or a group mapping, never from an attribute) → the
session opens, with ``mfa_source = idp`` when the assertion carries MFA evidence the tenant
accepts, else held for a local step-up when the MFA policy covers the user.

A refusal is audited (``signin.refused`` with its reason) in a transaction of its own, so
that it is kept although the sign-in's own transaction rolls back; the caller sees one
generic PERMISSION_DENIED whatever the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity import users
from ontrackio.identity.errors import SignInRefused, UserExists
from ontrackio.identity.mfa import policy as mfa_rules
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.sessions import store as sessions
from ontrackio.identity.signin import policy
from ontrackio.identity.signin.external import MFA_IDP, MFA_NONE, ExternalIdentity
from ontrackio.identity.sso import admission
from ontrackio.identity.v1 import sessions_pb2

# Reasons (the audit trail's; never shown to the person signing in).
EMAIL_UNVERIFIED = "email-unverified"
NO_ACCOUNT = "no-account"
INACTIVE = "inactive"
LINKED_ELSEWHERE = "email-linked-to-another-subject"
BREAK_GLASS = "break-glass-account"  # kept for password sign-in when the IdP fails


def _find_account(u: UnitOfWork, ext: ExternalIdentity) -> tuple[str, bool] | None:
    row = u.conn.execute(
        "SELECT a.user_id, x.active FROM external_accounts a JOIN users x ON x.id = a.user_id"
        " WHERE a.issuer = %s AND a.subject = %s",
        (ext.issuer, ext.subject),
    ).fetchone()
    return (str(row[0]), bool(row[1])) if row else None


def _link(u: UnitOfWork, ext: ExternalIdentity, user_id: str) -> None:
    u.conn.execute(
        "INSERT INTO external_accounts (issuer, subject, user_id, method) VALUES (%s, %s, %s, %s)",
        (ext.issuer, ext.subject, user_id, ext.method),
    )
    audit_log.append(
        u.conn,
        audit_log.Entry(
            "system",
            "sso_account.link",
            f"user:{user_id}",
            None,
            {"issuer": ext.issuer, "subject": audit_log.Personal("subject", ext.subject)},
            origin=origin.current(),
        ),
    )


def _user_for(u: UnitOfWork, ext: ExternalIdentity) -> str:
    found = _find_account(u, ext)
    if found is not None:
        user_id, active = found
        if not active:
            raise SignInRefused(INACTIVE)
        return user_id
    row = u.conn.execute(
        "SELECT id, active FROM users WHERE lower(email) = lower(%s)", (ext.email,)
    ).fetchone()
    if row is not None:
        if not row[1]:
            raise SignInRefused(INACTIVE)
        # Linked by email once, and only a user no IdP vouches for yet and who is not a
        # break-glass owner: a second IdP (or one whose users edit their own email) must not
        # take over an account another IdP, or the break-glass password, already holds.
        other = u.conn.execute(
            "SELECT 1 FROM external_accounts WHERE user_id = %s", (row[0],)
        ).fetchone()
        if other is not None:
            raise SignInRefused(LINKED_ELSEWHERE)
        if str(row[0]) in policy.load(u)["break_glass_users"]:
            raise SignInRefused(BREAK_GLASS)
        _link(u, ext, str(row[0]))
        return str(row[0])
    if not policy.load(u)["jit_provisioning"]:
        raise SignInRefused(NO_ACCOUNT)
    try:
        user = users.create(u, ext.email, ext.display_name[:200])
    except UserExists:  # created meanwhile by another sign-in: that one links it
        raise SignInRefused(NO_ACCOUNT) from None
    u.conn.execute(
        "INSERT INTO user_roles (user_id, role, granted_by) VALUES (%s, %s, %s)",
        (user["id"], roles.DEFAULT_ROLE, f"jit:{ext.method}"),
    )
    _link(u, ext, str(user["id"]))
    return str(user["id"])


def complete(
    u: UnitOfWork,
    key: bytes,
    ext: ExternalIdentity,
    *,
    verified_domains: Sequence[str],
    client_address: str = "",
    user_agent: str = "",
    next: str = "/",
    now: datetime | None = None,
) -> sessions_pb2.SessionGrant:
    """The session for ``ext``, or SignInRefused (the caller audits it: ``record_refusal``)."""
    now = now or datetime.now(UTC)
    if not ext.email_verified:
        raise SignInRefused(EMAIL_UNVERIFIED)
    decision = admission.check(u, ext.email, verified_domains, now)
    if not decision.allowed:
        raise SignInRefused(decision.reason)
    user_id = _user_for(u, ext)
    u.conn.execute(
        "UPDATE external_accounts SET last_sign_in_at = now() WHERE issuer = %s AND subject = %s",
        (ext.issuer, ext.subject),
    )
    # The IdP's word on MFA counts when the assertion carries evidence the tenant accepts
    # (mfa/policy.py); else the MFA policy may hold the session for a local step-up.
    evidence = mfa_rules.matching_evidence(
        ext.method, ext.mfa_evidence, policy.load(u)["mfa_evidence"]
    )
    return sessions.start(
        u,
        key,
        user_id=user_id,
        method=ext.method,
        mfa_source=MFA_IDP if evidence else MFA_NONE,
        factor=evidence,
        idp=ext.issuer,
        client_address=client_address,
        user_agent=user_agent,
        next=next,
    )


def record_refusal(u: UnitOfWork, method: str, email: str, why: str, detail: Any = None) -> None:
    """Audit a refused sign-in (``signin.refused``; the email kept as a personal value)."""
    audit_log.append(
        u.conn,
        audit_log.Entry(
            "anonymous",
            "signin.refused",
            audit_log.Personal("email", email[:320]) if email else "",
            None,
            {"method": method, "reason": why, **({"detail": detail} if detail else {})},
            outcome="refused",
            origin=origin.current(),
        ),
    )


def attempt(
    u: UnitOfWork, key: bytes, ext: ExternalIdentity, **kwargs: Any
) -> sessions_pb2.SessionGrant | SignInRefused:
    """``complete`` in the caller's transaction, under a savepoint: the session, or the
    refusal, audited in that transaction and returned for the caller to raise once it has
    committed (what the caller did before, such as marking an assertion used, is kept
    either way)."""
    try:
        with u.conn.transaction():
            return complete(u, key, ext, **kwargs)
    except SignInRefused as refused:
        record_refusal(u, ext.method, ext.email, refused.why)
        return refused


def sign_in(
    unit_of_work: Callable[[], Any],
    key: bytes,
    ext: ExternalIdentity,
    **kwargs: Any,
) -> sessions_pb2.SessionGrant:
    """``complete`` in a transaction of its own; a refusal is audited in another, then raised.

    ``unit_of_work`` opens a unit of work on the tenant's database (rt.dbs.unit_of_work(info)
    bound to the tenant)."""
    try:
        with unit_of_work() as u:
            return complete(u, key, ext, **kwargs)
    except SignInRefused as refused:
        with unit_of_work() as u:
            record_refusal(u, ext.method, ext.email, refused.why)
        raise
