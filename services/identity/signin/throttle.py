"""The failure counters of password sign-in, in the tenant's database (so every identity api
process, behind every gateway, sees the same lockout). The rules are throttle_rules.py's.

Each counter row is locked (``FOR UPDATE``) by the sign-in that reads it and written in
the same transaction, so concurrent guesses at one account are counted one after another
and cannot slip past the threshold together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ontrackio.core import paging
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.errors import UserNotFound
from ontrackio.identity.signin.throttle_rules import Counter, Policy

ACCOUNTS = ("signin_account_failures", "user_id")
ADDRESSES = ("signin_address_failures", "address")
# Wrong second factors at step-up, per user across their sessions (mfa/flow.py); the same
# rules and the tenant's lockout figures as the password's, a counter of their own.
STEP_UPS = ("mfa_user_failures", "user_id")


def _locked_row(u: UnitOfWork, table: tuple[str, str], key: Any) -> Counter:
    name, column = table
    u.conn.execute(
        f"INSERT INTO {name} ({column}) VALUES (%s) ON CONFLICT DO NOTHING",  # noqa: S608
        (key,),
    )
    row = u.conn.execute(
        f"SELECT failures, window_started_at, locked_until FROM {name}"  # noqa: S608
        f" WHERE {column} = %s FOR UPDATE",
        (key,),
    ).fetchone()
    return Counter(row[0], row[1], row[2])


def _store(u: UnitOfWork, table: tuple[str, str], key: Any, c: Counter) -> None:
    name, column = table
    u.conn.execute(
        f"UPDATE {name} SET failures = %s, window_started_at = %s, locked_until = %s"  # noqa: S608
        f" WHERE {column} = %s",
        (c.failures, c.window_started_at, c.locked_until, key),
    )


def current(u: UnitOfWork, table: tuple[str, str], key: Any) -> Counter:
    """The counter, locked for this transaction (a zero counter when none was kept)."""
    return _locked_row(u, table, key)


def failed(
    u: UnitOfWork, table: tuple[str, str], key: Any, c: Counter, policy: Policy, now: datetime
) -> Counter:
    """Count one more failure on a counter read by ``current`` in this transaction."""
    new = policy.after_failure(c, now)
    _store(u, table, key, new)
    return new


def clear_account(u: UnitOfWork, user_id: Any, table: tuple[str, str] = ACCOUNTS) -> None:
    name, column = table
    u.conn.execute(f"DELETE FROM {name} WHERE {column} = %s", (user_id,))  # noqa: S608


def unlock(u: UnitOfWork, user_id: str, actor: str, now: datetime) -> bool:
    """Lift a user's lockouts (password and MFA step-up) and forget their failures (audited
    ``signin.unlock``); whether they were locked. UserNotFound for an unknown user."""
    uid = paging.parse_id(user_id, "user_id")
    if u.conn.execute("SELECT 1 FROM users WHERE id = %s", (uid,)).fetchone() is None:
        raise UserNotFound("user not found")
    row = u.conn.execute(
        "DELETE FROM signin_account_failures WHERE user_id = %s RETURNING locked_until, failures",
        (uid,),
    ).fetchone()
    step_ups = u.conn.execute(
        "DELETE FROM mfa_user_failures WHERE user_id = %s RETURNING locked_until", (uid,)
    ).fetchone()
    was_locked = bool(row and row[0] is not None and row[0] > now) or bool(
        step_ups and step_ups[0] is not None and step_ups[0] > now
    )
    audit_log.append(
        u.conn,
        audit_log.Entry(
            actor,
            "signin.unlock",
            f"user:{uid}",
            {"locked": was_locked, "failures": row[1] if row else 0},
            {"locked": False, "failures": 0},
            origin=origin.current(),
        ),
    )
    return was_locked
