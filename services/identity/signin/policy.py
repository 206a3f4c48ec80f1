"""The tenant's sign-in policy: session timeouts, SSO-only with break-glass owners,
just-in-time SSO accounts, lockout figures, and the MFA policy (who must use MFA, the
enrolment grace period, which IdP evidence counts, passkey user verification: the rules are
identity/mfa/policy.py). One row per tenant database (migrations 0004, 0010)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.errors import InvalidArgument
from ontrackio.identity.mfa import policy as mfa_rules
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.sessions import rules as session_rules

COLUMNS = (
    "idle_timeout_seconds, absolute_timeout_seconds, sso_required, break_glass_users,"
    " jit_provisioning, lockout_threshold, lockout_seconds, mfa_policy, mfa_grace_days,"
    " mfa_grace_until, mfa_evidence, passkey_user_verification, updated_at, updated_by"
)
# Keys of ``update`` that are replaced as given (no "0 = keep").
_MFA_KEYS = ("mfa_policy", "mfa_grace_days", "mfa_evidence", "passkey_user_verification")
MAX_BREAK_GLASS = 10
MAX_LOCKOUT_THRESHOLD = 1000
MAX_LOCKOUT_SECONDS = 7 * 24 * 3600


class InvalidPolicy(InvalidArgument):
    pass


def load(u: UnitOfWork) -> dict[str, Any]:
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {COLUMNS} FROM signin_policy").fetchone()
    assert row is not None, "migration 0004 inserts the policy row"
    row["break_glass_users"] = [str(x) for x in row["break_glass_users"]]
    return row


def _mfa_changes(old: dict[str, Any], changes: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The MFA columns after ``changes`` (each key given replaces; None keeps), checked."""
    new = {k: old[k] for k in (*_MFA_KEYS, "mfa_grace_until")}
    for k in _MFA_KEYS:
        if changes.get(k) is not None:
            new[k] = changes[k]
    new["mfa_policy"] = mfa_rules.validate_policy(new["mfa_policy"])
    new["mfa_grace_days"] = mfa_rules.validate_grace_days(new["mfa_grace_days"])
    new["passkey_user_verification"] = mfa_rules.validate_user_verification(
        new["passkey_user_verification"]
    )
    if not isinstance(new["mfa_evidence"], dict):
        raise InvalidPolicy("mfa_evidence maps an IdP kind to its accepted values")
    new["mfa_evidence"] = {
        kind: list(mfa_rules.validate_evidence(kind, values))
        for kind, values in new["mfa_evidence"].items()
    }
    if mfa_rules.covers_more(old["mfa_policy"], new["mfa_policy"]):
        # People the policy did not cover may enrol from now for the grace period.
        new["mfa_grace_until"] = now + timedelta(days=new["mfa_grace_days"])
    return new


def _user_ids(values: list[str]) -> list[str]:
    out = []
    for v in values:
        try:
            out.append(str(uuid.UUID(v)))
        except ValueError:
            raise InvalidPolicy("break_glass_users must be user ids") from None
    return list(dict.fromkeys(out))


def update(u: UnitOfWork, changes: dict[str, Any], actor: str) -> dict[str, Any]:
    """Apply ``changes`` (only the keys given; timeouts and lockout figures 0 = keep).

    Break-glass users must be active owners; an SSO-only policy needs at least one, so a
    tenant whose IdP fails can still be entered (else InvalidPolicy). MFA keys (``_MFA_KEYS``)
    replace when given (None keeps); a policy that covers more people than before starts a
    new enrolment grace period (InvalidMfaPolicy for values out of range)."""
    old = load(u)
    plain = {k: v for k, v in changes.items() if k not in _MFA_KEYS}
    new = {**old, **{k: v for k, v in plain.items() if v not in (0, None)}}
    new.update(_mfa_changes(old, changes, datetime.now(UTC)))
    for flag in ("sso_required", "jit_provisioning"):
        if flag in changes:
            new[flag] = bool(changes[flag])
    if "break_glass_users" in changes:
        new["break_glass_users"] = _user_ids(list(changes["break_glass_users"]))
    session_rules.validate_timeouts(new["idle_timeout_seconds"], new["absolute_timeout_seconds"])
    if not 1 <= new["lockout_threshold"] <= MAX_LOCKOUT_THRESHOLD:
        raise InvalidPolicy(f"lockout_threshold must be 1 to {MAX_LOCKOUT_THRESHOLD}")
    if not 1 <= new["lockout_seconds"] <= MAX_LOCKOUT_SECONDS:
        raise InvalidPolicy(f"lockout_seconds must be 1 to {MAX_LOCKOUT_SECONDS}")
    if len(new["break_glass_users"]) > MAX_BREAK_GLASS:
        raise InvalidPolicy(f"at most {MAX_BREAK_GLASS} break-glass users")
    if new["break_glass_users"]:
        owners = {
            str(r[0])
            for r in u.conn.execute(
                "SELECT r.user_id FROM user_roles r JOIN users s ON s.id = r.user_id"
                " WHERE r.role = %s AND s.active AND r.user_id = ANY(%s::uuid[])",
                (roles.OWNER, new["break_glass_users"]),
            )
        }
        missing = [x for x in new["break_glass_users"] if x not in owners]
        if missing:
            raise InvalidPolicy("break-glass users must be active owners: " + ", ".join(missing))
    if new["sso_required"] and not new["break_glass_users"]:
        raise InvalidPolicy(
            "sso_required needs at least one break-glass owner, who can still sign in with a"
            " password when the IdP fails"
        )
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "UPDATE signin_policy SET idle_timeout_seconds = %s, absolute_timeout_seconds = %s,"
            " sso_required = %s, break_glass_users = %s::uuid[], jit_provisioning = %s,"
            " lockout_threshold = %s, lockout_seconds = %s, mfa_policy = %s, mfa_grace_days = %s,"
            " mfa_grace_until = %s, mfa_evidence = %s, passkey_user_verification = %s,"
            f" updated_at = now(), updated_by = %s RETURNING {COLUMNS}",
            (
                new["idle_timeout_seconds"],
                new["absolute_timeout_seconds"],
                new["sso_required"],
                new["break_glass_users"],
                new["jit_provisioning"],
                new["lockout_threshold"],
                new["lockout_seconds"],
                new["mfa_policy"],
                new["mfa_grace_days"],
                new["mfa_grace_until"],
                Jsonb(new["mfa_evidence"]),
                new["passkey_user_verification"],
                actor[:200],
            ),
        ).fetchone()
    row["break_glass_users"] = [str(x) for x in row["break_glass_users"]]
    shown, before = _audited(row), _audited(old)
    audit_log.append(
        u.conn,
        audit_log.Entry(
            actor, "signin_policy.set", "signin_policy", before, shown, origin=origin.current()
        ),
    )
    return row


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    """A policy as the audit trail keeps it (JSON: the grace end as ISO 8601)."""
    out = {k: v for k, v in row.items() if k not in ("updated_at", "updated_by")}
    if out.get("mfa_grace_until") is not None:
        out["mfa_grace_until"] = out["mfa_grace_until"].isoformat()
    return out
