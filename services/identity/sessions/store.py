"""Sessions of one tenant: opening, looking up, touching, ending (identity's tenant database).

Every opening and ending is an audit entry in the same transaction, and every ending emits
``identity.sessions_revoked`` (published before the call returns), on which every gateway
worker forgets the sessions it cached. The cookie value exists only in the SessionGrant
returned by ``start``; the table keeps the keyed hash of its secret.

A session opens at the stage the tenant's MFA policy gives it (``stage_at_start``:
identity/mfa/policy.py): ``full``, or ``step_up`` / ``enrol`` when the policy wants a factor
the sign-in did not prove; it becomes ``full`` by ``rotate`` (a new session in its place).
The stage is judged again at every look-up (``lookup``, and so every refresh): a ``full``
session without MFA whose user the policy has come to cover since is handed out as
``step_up`` or ``enrol`` (or as ended, once the enrolment grace is over), so a policy change
needs no one to sign in again to take effect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from ontrackio.core import paging
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.errors import InvalidArgument, NotFound
from ontrackio.core.protoconv import ts
from ontrackio.identity.errors import MfaEnrolmentOverdue
from ontrackio.identity.mfa import policy as mfa_rules
from ontrackio.identity.mfa import store as mfa_store
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.sessions import rules
from ontrackio.identity.signin import policy
from ontrackio.identity.signin.external import MFA_IDP, MFA_LOCAL, MFA_NONE
from ontrackio.identity.v1 import sessions_pb2 as pb

COLUMNS = (
    "s.id, s.user_id, s.method, s.mfa_source, s.factor, s.idp, s.created_at, s.last_seen_at,"
    " s.idle_expires_at, s.expires_at, s.revoked_at, s.revoked_reason, s.client_address,"
    " s.user_agent, s.stage"
)
FROM = "FROM sessions s JOIN users x ON x.id = s.user_id"
LIVE = "s.revoked_at IS NULL AND s.expires_at > now() AND s.idle_expires_at > now() AND x.active"
MFA_SOURCES = (MFA_IDP, MFA_LOCAL, MFA_NONE)


class SessionNotFound(NotFound):
    pass


class SessionEnded(NotFound):
    """The session has ended (revoked, idle or past its absolute expiry)."""


def _audit(u: UnitOfWork, actor: str, action: str, target: str, old: Any, new: Any) -> None:
    audit_log.append(
        u.conn, audit_log.Entry(actor, action, target, old, new, origin=origin.current())
    )


def grace_until(u: UnitOfWork, p: dict[str, Any], user_id: Any) -> datetime | None:
    """When the user's enrolment grace ends, the latest of: the policy's; ``mfa_grace_days``
    after the user was created (a user added since has the same time to enrol); the grace
    an admin's reset of their factors gave them (``mfa_enrol_by``)."""
    row = u.conn.execute(
        "SELECT created_at, mfa_enrol_by FROM users WHERE id = %s", (user_id,)
    ).fetchone()
    ends = [p["mfa_grace_until"]] if p["mfa_grace_until"] is not None else []
    if row is not None:
        ends.append(row[0] + timedelta(days=p["mfa_grace_days"]))
        if row[1] is not None:
            ends.append(row[1])
    return max(ends) if ends else None


def stage_at_start(
    u: UnitOfWork, p: dict[str, Any], user_id: Any, user_roles: list[str], mfa_proven: bool
) -> str:
    """The stage a session of ``user_id`` opens at under policy ``p``; MfaEnrolmentOverdue
    (a SignInRefused) for a covered user with no factor past the grace period."""
    if mfa_proven or not mfa_rules.requires_mfa(p["mfa_policy"], user_roles):
        return mfa_rules.FULL
    return mfa_rules.stage_at_sign_in(
        p["mfa_policy"],
        user_roles,
        mfa_proven=False,
        has_factor=mfa_store.has_factor(u, user_id),
        grace_until=grace_until(u, p, user_id),
        now=datetime.now(UTC),
    )


def start(
    u: UnitOfWork,
    key: bytes,
    *,
    user_id: str,
    method: str,
    mfa_source: str,
    factor: str = "",
    idp: str = "",
    client_address: str = "",
    user_agent: str = "",
    next: str = "/",
    stage: str | None = None,
    may_enrol: bool = False,
) -> pb.SessionGrant:
    """Open a session for an active user and audit the sign-in (``session.start``).

    ``stage`` None: the MFA policy decides (``stage_at_start``; ``mfa_source`` other than
    none counts as MFA proven); a step-up passes ``full``. Raises MfaEnrolmentOverdue,
    unless ``may_enrol`` (an invitation just accepted: a new account that never had a
    factor, its mailbox proven by the link), which opens at ``enrol`` instead."""
    if mfa_source not in MFA_SOURCES:
        raise ValueError(f"mfa_source must be one of {MFA_SOURCES}")
    p = policy.load(u)
    if stage is None:
        user_roles = role_store.roles_of(u, user_id)
        try:
            stage = stage_at_start(u, p, user_id, user_roles, mfa_source != MFA_NONE)
        except MfaEnrolmentOverdue:
            if not may_enrol:
                raise
            stage = mfa_rules.ENROL
    now = datetime.now(UTC)
    expiry = rules.expiry_at_start(now, p["idle_timeout_seconds"], p["absolute_timeout_seconds"])
    issued = rules.issue(key)
    address = rules.printable(client_address, 64)
    u.conn.execute(
        "INSERT INTO sessions (id, secret_hash, user_id, method, mfa_source, factor, idp,"
        " created_at, last_seen_at, idle_expires_at, expires_at, client_address, user_agent,"
        " stage) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            issued.token_id,
            issued.secret_hash,
            user_id,
            method,
            mfa_source,
            factor,
            idp[:500],
            now,
            now,
            expiry.idle_expires_at,
            expiry.expires_at,
            address,
            rules.printable(user_agent, rules.MAX_USER_AGENT),
            stage,
        ),
    )
    _audit(
        u,
        rules.user_actor(user_id),
        "session.start",
        f"session:{issued.token_id}",
        None,
        {
            "method": method,
            "mfa_source": mfa_source,
            "factor": factor,
            "idp": idp[:500],
            "stage": stage,
        },
    )
    return pb.SessionGrant(
        cookie=issued.bearer,
        session_id=issued.token_id,
        user_id=str(user_id),
        csrf_token=rules.csrf_token(key, issued.token_id),
        expires_at=ts(expiry.expires_at),
        next=next,
        stage=stage,
    )


def _session_id(session_id: str) -> str:
    if not rules.access_tokens.ID_RE.match(session_id or ""):
        raise SessionNotFound("session not found")
    return session_id


def lookup(u: UnitOfWork, session_id: str) -> dict[str, Any]:
    """The record the gateway checks: hash, expiries, revocation, the user's state and roles."""
    session_id = _session_id(session_id)
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {COLUMNS}, s.secret_hash, x.active AS user_active {FROM} WHERE s.id = %s",
            (session_id,),
        ).fetchone()
    if row is None:
        raise SessionNotFound("session not found")
    row["roles"] = role_store.roles_of(u, row["user_id"])
    p = policy.load(u)
    row["idle_timeout_seconds"] = p["idle_timeout_seconds"]
    _judge_stage(u, p, row)
    return row


def _judge_stage(u: UnitOfWork, p: dict[str, Any], row: dict[str, Any]) -> None:
    """The stage of a session row as the MFA policy and the user's factors are now.

    Only a full session whose MFA still counts keeps its stage without a look: one stepped
    up or signed in with a passkey (``local``), or one whose IdP evidence the tenant still
    accepts (``idp``; a narrowed evidence list judges it as one without MFA). Every other
    row is judged as a sign-in would be now: a session held at ``enrol`` whose user has
    since set a factor up (in another session) is held at ``step_up``, so it cannot add a
    factor of its own; one the policy no longer covers is full. A full or step_up session
    past the enrolment grace is handed out as ended; one opened at ``enrol`` stays there
    (an invitation may open past the grace, and the stage allows enrolment only)."""
    source = row["mfa_source"]
    proven = source == MFA_LOCAL or (
        source == MFA_IDP
        and mfa_rules.idp_proves_mfa(row["method"], [row["factor"]], p["mfa_evidence"])
    )
    if row["stage"] == mfa_rules.FULL and proven:
        return
    try:
        row["stage"] = stage_at_start(u, p, row["user_id"], row["roles"], proven)
    except MfaEnrolmentOverdue:
        if row["stage"] != mfa_rules.ENROL:
            row["revoked_at"] = row["revoked_at"] or datetime.now(UTC)  # handed out as ended


def touch(u: UnitOfWork, session_id: str, address: str) -> dict[str, Any]:
    """Move the idle expiry on (a live session only; SessionEnded otherwise)."""
    session_id = _session_id(session_id)
    idle = policy.load(u)["idle_timeout_seconds"]
    row = u.conn.execute(
        "UPDATE sessions s SET last_seen_at = now(),"
        " idle_expires_at = least(now() + make_interval(secs => %s), s.expires_at),"
        " client_address = %s"
        f" FROM users x WHERE x.id = s.user_id AND s.id = %s AND {LIVE} RETURNING s.id",
        (idle, rules.printable(address, 64), session_id),
    ).fetchone()
    if row is None:
        raise SessionEnded("the session has ended")
    return lookup(u, session_id)


def get(u: UnitOfWork, session_id: str, user_id: str, *, lock: bool = False) -> dict[str, Any]:
    """The caller's own live session with the user's details (who am I). ``lock``: the
    session row is locked to the end of the transaction, and read as it is once any step
    holding it has committed (concurrent MFA steps of one session are judged one after
    another, so a session ended by its fifth wrong code judges no sixth)."""
    session_id = _session_id(session_id)
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {COLUMNS}, x.email, x.display_name {FROM}"
            f" WHERE s.id = %s AND s.user_id = %s AND {LIVE}"
            + (" FOR UPDATE OF s" if lock else ""),
            (session_id, user_id),
        ).fetchone()
    if row is None:
        raise SessionEnded("the session has ended")
    row["roles"] = role_store.roles_of(u, row["user_id"])
    _judge_stage(u, policy.load(u), row)
    if row["revoked_at"] is not None:
        raise SessionEnded("the session has ended")
    return row


def list_page(
    u: UnitOfWork, user_id: str, size: int, token: str
) -> tuple[list[dict[str, Any]], str]:
    """Live sessions, a page at a time (ordered by id; the token is the last id seen)."""
    size = paging.page_size(size)
    after = token or ""
    if after and not rules.access_tokens.ID_RE.match(after):
        raise InvalidArgument("page_token is not valid")
    user_clause = ""
    args: list[Any] = [after]
    if user_id:
        user_clause = " AND s.user_id = %s"
        args.append(paging.parse_id(user_id, "user_id"))
    with u.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {COLUMNS}, x.email, x.display_name {FROM}"
            f" WHERE {LIVE} AND s.id > %s{user_clause} ORDER BY s.id LIMIT %s",
            (*args, size + 1),
        ).fetchall()
    more = len(rows) > size
    rows = rows[:size]
    for r in rows:
        r["roles"] = role_store.roles_of(u, r["user_id"])
    return rows, rows[-1]["id"] if more else ""


def _end(u: UnitOfWork, where: str, args: tuple, reason: str) -> list[str]:
    rows = u.conn.execute(
        "UPDATE sessions s SET revoked_at = now(), revoked_reason = %s"
        f" WHERE s.revoked_at IS NULL AND {where} RETURNING s.id",
        (reason, *args),
    ).fetchall()
    return [r[0] for r in rows]


def _announce(u: UnitOfWork, ids: list[str], user_id: str, reason: str) -> None:
    if ids or user_id:
        u.emit(
            "identity.sessions_revoked",
            pb.SessionsRevoked(session_ids=ids[:1000], user_id=user_id, reason=reason),
            await_publish=True,
        )


def end(u: UnitOfWork, session_id: str, actor: str, reason: str = rules.ENDED_LOGOUT) -> bool:
    """End one session (idempotent: False when it had already ended)."""
    session_id = _session_id(session_id)
    ids = _end(u, "s.id = %s", (session_id,), reason)
    if ids:
        _audit(u, actor, "session.end", f"session:{session_id}", None, {"reason": reason})
        _announce(u, ids, "", reason)
    return bool(ids)


def revoke_user(u: UnitOfWork, user_id: str, actor: str, reason: str) -> int:
    """End every session of one user; every gateway forgets them (even ones it missed)."""
    ids = _end(u, "s.user_id = %s", (user_id,), reason)
    _audit(
        u, actor, "session.revoke", f"user:{user_id}", None, {"reason": reason, "count": len(ids)}
    )
    _announce(u, ids, str(user_id), reason)
    return len(ids)


def revoke_all(u: UnitOfWork, actor: str, reason: str = rules.ENDED_TENANT) -> int:
    """End every session of the tenant."""
    ids = _end(u, "true", (), reason)
    _audit(u, actor, "session.revoke", "tenant", None, {"reason": reason, "count": len(ids)})
    for i in range(0, len(ids), 1000):
        _announce(u, ids[i : i + 1000], "", reason)
    return len(ids)


def announce_policy_change(u: UnitOfWork) -> int:
    """After an MFA policy change: every gateway forgets the tenant's live sessions it
    cached, so the next request sees each one's stage as ``lookup`` now judges it (nothing
    ends; the event's reason says so)."""
    ids = [
        r[0]
        for r in u.conn.execute(
            f"SELECT s.id {FROM} WHERE {LIVE}",
        ).fetchall()
    ]
    for i in range(0, len(ids), 1000):
        _announce(u, ids[i : i + 1000], "", rules.ENDED_MFA_POLICY)
    return len(ids)


def rotate(u: UnitOfWork, key: bytes, session_id: str, user_id: str, **changes: Any):
    """A new session in place of a live one (a privilege change within it: MFA step-up);
    the old one ends. ``changes`` may set mfa_source, factor and stage (default: decided
    again); the rest is carried over."""
    old = get(u, session_id, user_id)
    end(u, session_id, rules.user_actor(user_id), rules.ENDED_ROTATED)
    return start(
        u,
        key,
        user_id=str(user_id),
        method=old["method"],
        mfa_source=changes.get("mfa_source", old["mfa_source"]),
        factor=changes.get("factor", old["factor"]),
        idp=old["idp"],
        client_address=old["client_address"],
        user_agent=old["user_agent"],
        stage=changes.get("stage"),
    )


def record_mfa_failure(u: UnitOfWork, session_id: str, limit: int) -> bool:
    """Count a wrong factor against a session at a MFA stage; True when the count reaches
    ``limit`` and the session has been ended for it (audited, announced)."""
    row = u.conn.execute(
        "UPDATE sessions SET mfa_failures = mfa_failures + 1 WHERE id = %s AND revoked_at IS NULL"
        " RETURNING mfa_failures, user_id",
        (_session_id(session_id),),
    ).fetchone()
    if row is None or row[0] < limit:
        return False
    end(u, session_id, "system", rules.ENDED_MFA_FAILURES)
    return True


def now_utc() -> datetime:
    return datetime.now(UTC)
