"""Named external collaborators: storage in identity's tenant database (migration 0008).

An exception admits one address to SSO sign-in although its domain is not verified, until
it expires; ``find`` and ``find_active`` are what sign-in asks (``sso/admission.py`` judges
the expiry against the time of the sign-in, so an exception ends at once, with no sweep).
Every change is an entry of the tenant's audit trail in the change's own transaction, the
address as a personal value (``log.Personal``), which an erasure can pseudonymise.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.domain import collaborators as rules
from ontrackio.identity.errors import CollaboratorNotFound
from ontrackio.identity.sso.admission import Collaborator

COLUMNS = "id, address, reason, approver, expires_at, created_at"
MAX_LISTED = 1000


def _audit(u: UnitOfWork, actor: str, action: str, row_id, old: Any, new: Any) -> None:
    audit_log.append(
        u.conn,
        audit_log.Entry(actor, action, f"collaborator:{row_id}", old, new, origin=origin.current()),
    )


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the audit trail keeps it: the address as a personal value."""
    return {
        "address": audit_log.Personal("email", row["address"]),
        "reason": row["reason"],
        "expires_at": row["expires_at"].isoformat(),
        "approver": row["approver"],
    }


def add(
    u: UnitOfWork, *, address: str, reason: str, expires_at: datetime | None, actor: str, now
) -> dict[str, Any]:
    """A new exception approved by ``actor``; one the address had (expired or not) is
    replaced by it (recorded as the entry's old value). Raises InvalidCollaborator."""
    address = rules.validate_address(address)
    reason = rules.validate_reason(reason)
    expires_at = rules.validate_expiry(expires_at, now)
    with u.conn.cursor(row_factory=dict_row) as cur:
        old = cur.execute(
            f"SELECT {COLUMNS} FROM collaborators WHERE lower(address) = lower(%s) FOR UPDATE",
            (address,),
        ).fetchone()
        # An upsert, so that two approvals for one address at once both succeed, the later
        # one in force (each is in the trail).
        row = cur.execute(
            "INSERT INTO collaborators (id, address, reason, approver, expires_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT ((lower(address))) DO UPDATE SET"
            " id = excluded.id, address = excluded.address, reason = excluded.reason,"
            " approver = excluded.approver, expires_at = excluded.expires_at,"
            f" created_at = now() RETURNING {COLUMNS}",
            (uuid.uuid4(), address, reason, actor[:200], expires_at),
        ).fetchone()
    _audit(
        u,
        actor,
        "collaborator.add",
        row["id"],
        {**_shown(old), "id": str(old["id"])} if old else None,
        _shown(row),
    )
    return row


def list_all(u: UnitOfWork, *, include_expired: bool, now: datetime) -> list[dict[str, Any]]:
    with u.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {COLUMNS} FROM collaborators WHERE %s OR expires_at > %s"
            f" ORDER BY lower(address) LIMIT {MAX_LISTED}",
            (include_expired, now),
        ).fetchall()


def remove(u: UnitOfWork, collaborator_id: str, actor: str) -> dict[str, Any]:
    """Remove the exception; it stops admitting at once. Raises CollaboratorNotFound."""
    try:
        row_id = uuid.UUID(collaborator_id)
    except (ValueError, TypeError, AttributeError):
        raise CollaboratorNotFound("collaborator not found") from None
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"DELETE FROM collaborators WHERE id = %s RETURNING {COLUMNS}", (row_id,)
        ).fetchone()
    if row is None:
        raise CollaboratorNotFound("collaborator not found")
    _audit(u, actor, "collaborator.remove", row["id"], _shown(row), None)
    return row


def _collaborator(row: dict[str, Any] | None) -> Collaborator | None:
    if row is None:
        return None
    return Collaborator(str(row["id"]), row["address"], row["expires_at"])


def find(u: UnitOfWork, email: str) -> Collaborator | None:
    """The exception for ``email`` (case ignored), expired or not; None when it has none.
    What sign-in hands to ``admission.decide``, which judges the expiry (and so can say
    ``collaborator-expired``)."""
    if not isinstance(email, str) or not email.strip() or len(email) > 320 or "\x00" in email:
        return None
    with u.conn.cursor(row_factory=dict_row) as cur:
        return _collaborator(
            cur.execute(
                f"SELECT {COLUMNS} FROM collaborators WHERE lower(address) = lower(%s)",
                (email.strip(),),
            ).fetchone()
        )


def find_active(u: UnitOfWork, email: str, now: datetime) -> Collaborator | None:
    """The exception for ``email`` in force at ``now``, or None."""
    found = find(u, email)
    return found if found is not None and found.expires_at > now else None
