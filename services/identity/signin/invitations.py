"""Invitations of one tenant: a link to set a password, mailed through the mail outbox.

An invitation names an email and the role its user gets; the inviter must be allowed to
grant that role (an admin grants admin, member and auditor; only an owner, or an operator
through the CLI, grants owner). Creating one for an email with an open invitation revokes
that one (its link stops working at once, its unsent mail is dropped): re-inviting
replaces the link. The link's token (tokens.py) is single use: accepting it marks the
invitation used in the transaction that sets the password and opens the session.
Every change and every refused acceptance is an audit entry; the token never is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from psycopg.rows import dict_row

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.directory import TenantInfo
from ontrackio.core.keys.envelope import FieldCipher
from ontrackio.identity import users
from ontrackio.identity.domain import users as user_rules
from ontrackio.identity.errors import (
    InvalidInvitation,
    InvitationNotFound,
    InvitationRoleDenied,
    UserInactive,
)
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.roles import store as role_store
from ontrackio.identity.signin import mail, tokens
from ontrackio.identity.signin import policy as signin_policy
from ontrackio.identity.signin.smtp import Outgoing

COLUMNS = (
    "i.id, i.email, i.role, i.user_id, i.created_at, i.created_by, i.expires_at, i.used_at,"
    " i.revoked_at"
)
MAX_ORIGIN = 300
TOKEN_ACTOR_PREFIX = "token:"


def check_origin(value: str) -> str:
    """The tenant's canonical origin as the gateway (or CLI) names it: ``http(s)://host[:port]``
    and nothing else (no path, query, credentials or spaces: it goes into a mail)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidInvitation("origin must be http(s)://host[:port]") from None
    if (
        len(value) > MAX_ORIGIN
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
        or not value.isascii()
        or any(c.isspace() or not c.isprintable() for c in value)
    ):
        raise InvalidInvitation("origin must be http(s)://host[:port]")
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")


def may_invite(held: list[str] | None, actor: str, role: str) -> bool:
    """Whether an actor may hand out ``role``: signed-in users by their roles (admin for
    any role but owner, owner for all); a token as an admin (its scopes were checked by the
    gateway, and a token is never an owner); operators (the CLI) for any role."""
    if held is None:
        return role != roles.OWNER or not actor.startswith(TOKEN_ACTOR_PREFIX)
    if not roles.grants(held, roles.ADMINISTER):
        return False
    return role != roles.OWNER or roles.OWNER in held


def _audit(u: UnitOfWork, actor: str, action: str, target: str, old: Any, new: Any, **kw) -> None:
    audit_log.append(
        u.conn, audit_log.Entry(actor, action, target, old, new, origin=origin.current(), **kw)
    )


def mail_text(origin_url: str, link: str, role: str, expires_at: datetime) -> Outgoing:
    """The invitation mail: where to sign in and the link; never a password."""
    host = urlsplit(origin_url).hostname or origin_url
    body = (
        f"You have been invited to OnTrackio at {origin_url} (role: {role}).\n\n"
        "Open this link to choose your password and sign in. It works once, until "
        f"{expires_at:%Y-%m-%d %H:%M} UTC:\n\n{link}\n\n"
        f"Afterwards, sign in at {origin_url}/signin.\n\n"
        "If you did not expect this invitation, ignore this message: nothing happens "
        "until the link is used.\n"
    )
    return Outgoing("", f"Your invitation to OnTrackio ({host})", body)


def create(
    u: UnitOfWork,
    key: bytes,
    fields: FieldCipher,
    info: TenantInfo,
    *,
    email: str,
    role: str,
    display_name: str,
    origin_url: str,
    actor: str,
    ttl_seconds: int = tokens.DEFAULT_TTL_SECONDS,
) -> tuple[dict[str, Any], str]:
    """A new invitation row and its link (mailed in this transaction; returned for the CLI).

    Raises InvalidInvitation / InvalidUser for a bad request, InvitationRoleDenied when the
    actor may not grant ``role``, UserInactive for a deactivated user."""
    email = user_rules.validate_email(email)
    if role not in roles.ROLES:
        raise InvalidInvitation(f"role must be one of {', '.join(roles.ROLES)}")
    display_name = user_rules.validate_display_name(display_name)
    origin_url = check_origin(origin_url)
    if not may_invite(role_store.actor_roles(u, actor), actor, role):
        raise InvitationRoleDenied(
            "only an owner can invite an owner"
            if role == roles.OWNER
            else "your role does not allow inviting"
        )
    user = u.conn.execute(
        "SELECT id, active FROM users WHERE lower(email) = lower(%s) FOR UPDATE", (email,)
    ).fetchone()
    if user is None:
        user_id = users.create(u, email, display_name)["id"]
    elif not user[1]:
        raise UserInactive("this user is deactivated; reactivate them before inviting")
    else:
        user_id = user[0]
    replaced = _revoke_open(u, email, actor)
    issued = tokens.issue(key, info.slug, datetime.now(UTC), ttl_seconds)
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO invitations AS i (id, email, role, user_id, secret_hash, created_by,"
            f" expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}",
            (
                issued.invitation_id,
                email,
                role,
                user_id,
                issued.secret_hash,
                actor[:200],
                issued.expires_at,
            ),
        ).fetchone()
    link = f"{origin_url}/invite?token={issued.token}"
    text = mail_text(origin_url, link, role, issued.expires_at)
    mail.enqueue(
        u,
        fields,
        info,
        Outgoing(email, text.subject, text.body),
        invitation_id=issued.invitation_id,
    )
    row["mail_state"] = "pending"
    _audit(
        u,
        actor,
        "invitation.create",
        f"invitation:{issued.invitation_id}",
        {"replaced": [str(r) for r in replaced]} if replaced else None,
        {
            "email": audit_log.Personal("email", email),
            "role": role,
            "user_id": str(user_id),
            "expires_at": issued.expires_at.isoformat(),
        },
    )
    return row, link


def _revoke_open(u: UnitOfWork, email: str, actor: str) -> list[uuid.UUID]:
    rows = u.conn.execute(
        "UPDATE invitations SET revoked_at = now(), revoked_by = %s WHERE lower(email) ="
        " lower(%s) AND used_at IS NULL AND revoked_at IS NULL RETURNING id",
        (actor[:200], email),
    ).fetchall()
    ids = [r[0] for r in rows]
    if ids:
        _drop_unsent(u, ids)
    return ids


def _drop_unsent(u: UnitOfWork, ids: list[uuid.UUID]) -> None:
    u.conn.execute(
        "UPDATE mail_outbox SET state = 'dead', body = NULL, last_error = 'invitation revoked'"
        " WHERE invitation_id = ANY(%s) AND state = 'pending'",
        (ids,),
    )


def _with_mail_state(u: UnitOfWork, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    states = mail.states_of(u, [r["id"] for r in rows])
    for r in rows:
        r["mail_state"] = states.get(r["id"], "")
    return rows


def list_all(u: UnitOfWork, include_closed: bool) -> list[dict[str, Any]]:
    with u.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {COLUMNS} FROM invitations i WHERE %s OR (i.used_at IS NULL AND"
            " i.revoked_at IS NULL AND i.expires_at > now())"
            " ORDER BY i.created_at DESC, i.id LIMIT 1000",
            (include_closed,),
        ).fetchall()
    return _with_mail_state(u, rows)


def revoke(u: UnitOfWork, invitation_id: str, actor: str) -> dict[str, Any]:
    """Revoke an open invitation (audited); a closed one is returned unchanged."""
    try:
        iid = uuid.UUID(invitation_id)
    except (ValueError, TypeError):
        raise InvitationNotFound("invitation not found") from None
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "UPDATE invitations i SET revoked_at = now(), revoked_by = %s"
            f" WHERE id = %s AND used_at IS NULL AND revoked_at IS NULL RETURNING {COLUMNS}",
            (actor[:200], iid),
        ).fetchone()
        if row is None:
            row = cur.execute(
                f"SELECT {COLUMNS} FROM invitations i WHERE id = %s", (iid,)
            ).fetchone()
            if row is None:
                raise InvitationNotFound("invitation not found")
            return _with_mail_state(u, [row])[0]
    _drop_unsent(u, [iid])
    _audit(u, actor, "invitation.revoke", f"invitation:{iid}", {"open": True}, {"open": False})
    return _with_mail_state(u, [row])[0]


def open_invitation(
    u: UnitOfWork, key: bytes, tenant: str, token: str, *, lock: bool = False
) -> dict[str, Any]:
    """The open invitation a presented token is the link of, with its user's name; else
    InvitationNotFound (malformed, forged, expired, used, revoked or replaced alike)."""
    now = datetime.now(UTC)
    presented = tokens.verify(key, tenant, token, now)
    row = None
    if presented is not None:
        with u.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {COLUMNS}, i.secret_hash, s.display_name, s.active"
                " FROM invitations i JOIN users s ON s.id = i.user_id WHERE i.id = %s"
                + (" FOR UPDATE OF i" if lock else ""),
                (presented.invitation_id,),
            ).fetchone()
    if (
        row is None
        or not tokens.matches(key, presented, bytes(row["secret_hash"]))
        or row["used_at"] is not None
        or row["revoked_at"] is not None
        or row["expires_at"] <= now
        or not row["active"]
        or not _may_use_password(u, row["user_id"])
    ):
        raise InvitationNotFound("this invitation link is not valid any more")
    return row


def _may_use_password(u: UnitOfWork, user_id: Any) -> bool:
    """Accepting an invitation sets a password and opens a password session: under the
    tenant's ``sso_required`` only its break-glass users may (as for password sign-in)."""
    p = signin_policy.load(u)
    return not p["sso_required"] or str(user_id) in p["break_glass_users"]


def mark_used(u: UnitOfWork, row: dict[str, Any]) -> None:
    """Use the invitation up and give its user the role (in the accepting transaction)."""
    u.conn.execute("UPDATE invitations SET used_at = now() WHERE id = %s", (row["id"],))
    u.conn.execute(
        "INSERT INTO user_roles (user_id, role, granted_by) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (row["user_id"], row["role"], f"invitation:{row['id']}"),
    )
