"""Who holds which role in one tenant, and the check identity makes of signed-in actors.

The gateway admits a signed-in user to an operation when their roles grant its scope
(rules.ROLE_SCOPES); identity checks again (``require``) before it changes anything for a
``user:<id>`` actor, against the roles as stored now, so a role removed a moment ago no
longer acts even through a gateway that has not heard yet.
"""

from __future__ import annotations

from typing import Any

from ontrackio.core import paging
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.errors import FailedPrecondition, PermissionDenied
from ontrackio.identity.errors import UserNotFound
from ontrackio.identity.roles import rules
from ontrackio.identity.sessions import rules as session_rules


class RoleDenied(PermissionDenied):
    """The acting user's roles do not allow this."""


class LastOwner(FailedPrecondition):
    """The change would leave the tenant without an active owner."""


def roles_of(u: UnitOfWork, user_id: Any) -> list[str]:
    rows = u.conn.execute("SELECT role FROM user_roles WHERE user_id = %s", (user_id,)).fetchall()
    return sorted((r[0] for r in rows), key=rules.ROLES.index)


def actor_roles(u: UnitOfWork, actor: str) -> list[str] | None:
    """The roles of an active signed-in actor (``user:<id>``); [] for an inactive or unknown
    user; None when the actor is not a user (a token or an operator)."""
    user_id = session_rules.actor_user_id(actor)
    if user_id is None:
        return None
    try:
        user_id = paging.parse_id(user_id, "actor")
    except Exception:  # noqa: BLE001 - a malformed user actor holds no role
        return []
    row = u.conn.execute("SELECT active FROM users WHERE id = %s", (user_id,)).fetchone()
    return roles_of(u, user_id) if row and row[0] else []


def require(u: UnitOfWork, actor: str, scope: str) -> None:
    """RoleDenied unless ``actor`` may act with ``scope``. Tokens and operators pass: the
    gateway checked a token's scopes, and operators are the CLI (core/trust.py)."""
    held = actor_roles(u, actor)
    if held is not None and not rules.grants(held, scope):
        raise RoleDenied(f"your role does not allow this (it needs {scope!r})")


def require_for_tenant(dbs, info, actor: str, scope: str) -> None:
    """``require`` for calls that work outside the tenant's database (the key store): a
    transaction is opened only when the actor is a signed-in user."""
    if session_rules.actor_user_id(actor) is not None:
        with dbs.unit_of_work(info) as u:
            require(u, actor, scope)


# One lock per tenant database for changes that may remove an owner (role changes,
# deactivation): two owners demoting each other at once must not both see "2 owners left".
_OWNERS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('ontrackio.identity.owners'))"


def _active_owners(u: UnitOfWork) -> int:
    row = u.conn.execute(
        "SELECT count(*) FROM user_roles r JOIN users x ON x.id = r.user_id"
        " WHERE r.role = %s AND x.active",
        (rules.OWNER,),
    ).fetchone()
    return int(row[0])


def set_roles(u: UnitOfWork, user_id: str, roles: list[str], actor: str) -> list[str]:
    """Replace a user's roles (audited ``roles.set``). The acting user must be allowed
    (rules.may_assign); the last active owner cannot be demoted (LastOwner). Returns the
    new roles; the caller ends the user's sessions when they changed (privilege change)."""
    user_id = paging.parse_id(user_id, "user_id")
    new = rules.validate(roles)
    u.conn.execute(_OWNERS_LOCK)
    row = u.conn.execute("SELECT active FROM users WHERE id = %s FOR UPDATE", (user_id,)).fetchone()
    if row is None:
        raise UserNotFound("user not found")
    old = roles_of(u, user_id)
    held = rules.assigner_roles(actor_roles(u, actor), actor)
    if held is not None and not rules.may_assign(held, old, new):
        raise RoleDenied(
            "only an owner can grant or remove the owner role"
            if rules.grants(held, rules.ADMINISTER)
            else "your role does not allow changing roles"
        )
    if old == new:
        return new
    if rules.OWNER in old and rules.OWNER not in new and row[0] and _active_owners(u) <= 1:
        raise LastOwner("the tenant must keep at least one active owner")
    u.conn.execute(
        "DELETE FROM user_roles WHERE user_id = %s AND NOT (role = ANY(%s))", (user_id, new)
    )
    u.conn.execute(
        "INSERT INTO user_roles (user_id, role, granted_by)"
        " SELECT %s, r, %s FROM unnest(%s::text[]) r ON CONFLICT DO NOTHING",
        (user_id, actor[:200], new),
    )
    audit_log.append(
        u.conn,
        audit_log.Entry(
            actor,
            "roles.set",
            f"user:{user_id}",
            {"roles": old},
            {"roles": new},
            origin=origin.current(),
        ),
    )
    return new


def require_owner_for_owner(u: UnitOfWork, user_id: Any, actor: str, what: str) -> None:
    """An owner's account is changed this way (``what``: deactivate, reset the factors of)
    only by an owner or an operator, as only an owner unmakes one: RoleDenied otherwise."""
    if rules.OWNER not in roles_of(u, user_id):
        return
    held = rules.assigner_roles(actor_roles(u, actor), actor)
    if held is not None and rules.OWNER not in held:
        raise RoleDenied(f"only an owner can {what} an owner")


def check_deactivation(u: UnitOfWork, user_id: Any, actor: str) -> None:
    """Before deactivating ``user_id``: an owner is deactivated only by an owner (or an
    operator), as only an owner unmakes one (RoleDenied), and never the last active owner
    (LastOwner). Takes the owners lock, held to the end of ``u``'s transaction."""
    u.conn.execute(_OWNERS_LOCK)
    if rules.OWNER not in roles_of(u, user_id):
        return
    require_owner_for_owner(u, user_id, actor, "deactivate")
    row = u.conn.execute("SELECT active FROM users WHERE id = %s", (user_id,)).fetchone()
    if row and row[0] and _active_owners(u) <= 1:
        raise LastOwner("the tenant must keep at least one active owner")
