"""Password sign-in and setting a password through an invitation.

``sign_in`` answers a refusal by its reason (for the audit trail) and the caller turns
every reason into the same ``SignInFailed``: whether the account exists, is locked, is
deactivated, or may only use SSO is never told. Every attempt costs one argon2id check,
against ``DUMMY_HASH`` when there is no account or no password, so the time says nothing
either. Failures count against the client's address and, for a known account, against the
account (throttle_rules.py); both counters live in the tenant database.

The tenant policy's ``sso_required`` refuses password sign-in to everyone but its
``break_glass_users``: the decision reads the stored policy and the stored user only,
nothing from the request but email and password, so no request field can bypass it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.errors import InvitationNotFound, MfaEnrolmentOverdue
from ontrackio.identity.mfa.policy import ENROLMENT_OVERDUE
from ontrackio.identity.sessions import store as sessions
from ontrackio.identity.signin import invitations, passwords, throttle
from ontrackio.identity.signin import policy as signin_policy
from ontrackio.identity.signin.breach import BreachApi
from ontrackio.identity.signin.external import METHOD_INVITATION, METHOD_PASSWORD, MFA_NONE
from ontrackio.identity.signin.next_path import safe_next
from ontrackio.identity.signin.throttle_rules import Policy, account_policy, address_key
from ontrackio.identity.v1 import sessions_pb2

# Why a password sign-in was refused (audit entries ``signin.refused``, new.reason).
WRONG_PASSWORD = "wrong-password"
UNKNOWN_ACCOUNT = "unknown-account"
LOCKED = "locked"
ADDRESS_BLOCKED = "address-blocked"
SSO_REQUIRED = "sso-required"
INACTIVE = "inactive"
NO_PASSWORD = "no-password"
REASONS = (
    WRONG_PASSWORD,
    UNKNOWN_ACCOUNT,
    LOCKED,
    ADDRESS_BLOCKED,
    SSO_REQUIRED,
    INACTIVE,
    NO_PASSWORD,
    ENROLMENT_OVERDUE,
)
MAX_EMAIL = 320


@dataclass(frozen=True)
class Attempt:
    email: str
    password: str
    next: str = "/"
    client_address: str = ""
    user_agent: str = ""


def _user(u: UnitOfWork, email: str) -> tuple[Any, ...] | None:
    if not email or len(email) > MAX_EMAIL:
        return None
    return u.conn.execute(
        "SELECT s.id, s.active, c.hash FROM users s"
        " LEFT JOIN password_credentials c ON c.user_id = s.id"
        " WHERE lower(s.email) = lower(%s)",
        (email,),
    ).fetchone()


def sign_in(
    u: UnitOfWork,
    key: bytes,
    attempt: Attempt,
    *,
    address_policy: Policy,
    hasher: passwords.Hasher = passwords.HASHER,
) -> sessions_pb2.SessionGrant | str:
    """A session for the attempt, or the reason it is refused (REASONS). Counters and the
    audit entry of a refusal are written in ``u``: the caller must commit it."""
    now = datetime.now(UTC)
    email = attempt.email.strip()
    addr = address_key(attempt.client_address)
    addr_counter = throttle.current(u, throttle.ADDRESSES, addr)
    p = signin_policy.load(u)
    user = _user(u, email)
    user_id = user[0] if user else None
    acct_counter = throttle.current(u, throttle.ACCOUNTS, user_id) if user_id else None
    acct_policy = account_policy(p["lockout_threshold"], p["lockout_seconds"])
    stored = user[2] if user and user[2] else passwords.DUMMY_HASH
    matched = hasher.verify(stored, attempt.password)  # always exactly one check

    reason = None
    if address_policy.locked(addr_counter, now):
        reason = ADDRESS_BLOCKED
    elif user is None:
        reason = UNKNOWN_ACCOUNT
    elif p["sso_required"] and str(user_id) not in p["break_glass_users"]:
        reason = SSO_REQUIRED
    elif not user[1]:
        reason = INACTIVE
    elif acct_counter is not None and acct_policy.locked(acct_counter, now):
        reason = LOCKED
    elif not user[2]:
        reason = NO_PASSWORD
    elif not matched:
        reason = WRONG_PASSWORD

    if reason is not None:
        if reason != ADDRESS_BLOCKED:
            throttle.failed(u, throttle.ADDRESSES, addr, addr_counter, address_policy, now)
        if reason == WRONG_PASSWORD and acct_counter is not None:
            after = throttle.failed(u, throttle.ACCOUNTS, user_id, acct_counter, acct_policy, now)
            if acct_policy.locked(after, now):
                _audit_lockout(u, user_id, after.failures)
        _audit_refusal(u, user_id, email, reason)
        return reason

    if acct_counter is not None and acct_counter.failures:
        throttle.clear_account(u, user_id)
    if hasher.needs_rehash(stored):
        u.conn.execute(
            "UPDATE password_credentials SET hash = %s, updated_at = now() WHERE user_id = %s",
            (hasher.hash(attempt.password), user_id),
        )
    try:
        with u.conn.transaction():
            return sessions.start(
                u,
                key,
                user_id=str(user_id),
                method=METHOD_PASSWORD,
                mfa_source=MFA_NONE,
                client_address=attempt.client_address,
                user_agent=attempt.user_agent,
                next=safe_next(attempt.next),
            )
    except MfaEnrolmentOverdue as overdue:  # covered by the MFA policy, no factor, too late
        _audit_refusal(u, user_id, email, overdue.why)
        return overdue.why


def _audit_refusal(u: UnitOfWork, user_id: Any, email: str, reason: str) -> None:
    actor: str | audit_log.Personal = (
        f"user:{user_id}" if user_id else audit_log.Personal("email", email[:MAX_EMAIL])
    )
    audit_log.append(
        u.conn,
        audit_log.Entry(
            actor,
            "signin.refused",
            f"user:{user_id}" if user_id else "",
            None,
            {"method": METHOD_PASSWORD, "reason": reason},
            outcome="refused",
            origin=origin.current(),
        ),
    )


def _audit_lockout(u: UnitOfWork, user_id: Any, failures: int) -> None:
    audit_log.append(
        u.conn,
        audit_log.Entry(
            "system",
            "signin.locked",
            f"user:{user_id}",
            None,
            {"failures": failures},
            origin=origin.current(),
        ),
    )


# -- invitations ----------------------------------------------------------------------------


def check_password(
    email: str, password: str, breach_api: BreachApi | None, *, hasher=passwords.HASHER
) -> str:
    """The normalised password if it may be set (rules, then the breach API when one is
    configured), else PasswordRefused. Asks the network: call it outside a transaction."""
    pw = passwords.check_new(password, email=email)
    if breach_api is not None and breach_api.times_seen(pw):
        raise passwords.PasswordRefused(
            passwords.BREACHED,
            "This password has appeared in a data breach; choose another.",
        )
    return pw


def accept_invitation(
    u: UnitOfWork,
    key: bytes,
    invitation_key: bytes,
    tenant: str,
    token: str,
    password: str,
    *,
    expected_id: uuid.UUID,
    client_address: str = "",
    user_agent: str = "",
    hasher: passwords.Hasher = passwords.HASHER,
) -> sessions_pb2.SessionGrant:
    """Set the password of the invitation's user, use the invitation up and open a session,
    all in ``u``. ``password`` was checked by ``check_password``; ``expected_id`` is the
    invitation it was checked for (a link replaced meanwhile is InvitationNotFound)."""
    row = invitations.open_invitation(u, invitation_key, tenant, token, lock=True)
    if row["id"] != expected_id:
        raise InvitationNotFound("this invitation link is not valid any more")
    u.conn.execute(
        "INSERT INTO password_credentials (user_id, hash) VALUES (%s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, updated_at = now()",
        (row["user_id"], hasher.hash(password)),
    )
    invitations.mark_used(u, row)
    throttle.clear_account(u, row["user_id"])
    audit_log.append(
        u.conn,
        audit_log.Entry(
            f"user:{row['user_id']}",
            "invitation.accept",
            f"invitation:{row['id']}",
            None,
            {"role": row["role"], "password_set": True},
            origin=origin.current(),
        ),
    )
    return sessions.start(
        u,
        key,
        user_id=str(row["user_id"]),
        method=METHOD_INVITATION,
        mfa_source=MFA_NONE,
        client_address=client_address,
        user_agent=user_agent,
        next="/",
        may_enrol=True,
    )
