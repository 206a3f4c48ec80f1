"""API tokens and the admin allowlist of one tenant: storage in identity's tenant database.

Every change is appended to the database's audit trail (``core/audit``: who, when, from
where, old, new) in the same transaction, and the changes the gateways cache (revocation,
allowlist) emit an event that every gateway worker listens to. A token minting a token is
held to its own scopes, lifetime and networks (``access_tokens.check_narrower``); operators
are not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.errors import FailedPrecondition, NotFound
from ontrackio.identity import access_tokens as rules
from ontrackio.identity.errors import MintingTokenInvalid
from ontrackio.identity.v1 import access_pb2

TOKEN_COLUMNS = (
    "id, name, scopes, cidrs, expires_at, created_at, created_by, revoked_at,"
    " last_used_at, last_used_address"
)


class TokenNotFound(NotFound):
    pass


class WouldLockOut(FailedPrecondition):
    """The new allowlist excludes the address the change is made from."""


def _audit(
    u: UnitOfWork, actor: str, action: str, old: Any, new: Any, address: str = "", target=""
) -> None:
    o = origin.current()
    if address and not o.client_address:
        o = audit_log.Origin(o.request_id, rules.audit_address(address), o.trace_id)
    audit_log.append(u.conn, audit_log.Entry(actor, action, target, old, new, origin=o))


# -- tokens -------------------------------------------------------------------------------------


def create_token(
    u: UnitOfWork,
    key: bytes,
    *,
    name: str,
    scopes: list[str],
    cidrs: list[str],
    expires_in_seconds: int,
    actor: str,
) -> tuple[dict[str, Any], str]:
    """A new token row and the bearer string (the only time the secret exists).

    Raises InvalidToken for a malformed request; when ``actor`` is a token (``token:<id>``),
    MintingTokenInvalid if that token is unknown, revoked or expired, and TokenWidening if
    the new token would be wider than it (both PERMISSION_DENIED).
    """
    name = rules.validate_name(name)
    scopes = rules.validate_scopes(list(scopes))
    cidrs = rules.validate_cidrs(list(cidrs))
    seconds = rules.validate_expiry(expires_in_seconds)
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=seconds) if seconds else None
    minter_id = rules.actor_token_id(actor)
    if minter_id is not None:
        minter = _live_minter(u, minter_id, now)
        rules.check_narrower(
            scopes=scopes,
            cidrs=cidrs,
            expires_at=expires_at,
            parent_scopes=minter["scopes"],
            parent_cidrs=minter["cidrs"],
            parent_expires_at=minter["expires_at"],
            now=now,
        )
    issued = rules.issue(key)
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO api_tokens (id, name, secret_hash, scopes, cidrs, expires_at, created_by)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {TOKEN_COLUMNS}",
            (issued.token_id, name, issued.secret_hash, scopes, cidrs, expires_at, actor[:200]),
        ).fetchone()
    _audit(
        u,
        actor,
        "token.create",
        None,
        {
            "id": issued.token_id,
            "name": name,
            "scopes": scopes,
            "cidrs": cidrs,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
        target=f"token:{issued.token_id}",
    )
    return row, issued.bearer


def _live_minter(u: UnitOfWork, token_id: str, now: datetime) -> dict[str, Any]:
    """The minting token's row, locked against a concurrent revocation; MintingTokenInvalid
    when it is unknown, revoked or expired."""
    row = None
    if rules.ID_RE.match(token_id):
        with u.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "SELECT scopes, cidrs, expires_at, revoked_at FROM api_tokens"
                " WHERE id = %s FOR SHARE",
                (token_id,),
            ).fetchone()
    if row is None or row["revoked_at"] is not None or rules.is_expired(row["expires_at"], now):
        raise MintingTokenInvalid("the token making this request is not valid")
    return row


def list_tokens(u: UnitOfWork, include_revoked: bool) -> list[dict[str, Any]]:
    with u.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE %s OR revoked_at IS NULL"
            " ORDER BY created_at, id LIMIT 1000",
            (include_revoked,),
        ).fetchall()


def _token_id(token_id: str) -> str:
    if not rules.ID_RE.match(token_id or ""):
        raise TokenNotFound("token not found")
    return token_id


def revoke_token(u: UnitOfWork, token_id: str, actor: str) -> dict[str, Any]:
    token_id = _token_id(token_id)
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "UPDATE api_tokens SET revoked_at = now(), revoked_by = %s"
            f" WHERE id = %s AND revoked_at IS NULL RETURNING {TOKEN_COLUMNS}",
            (actor[:200], token_id),
        ).fetchone()
        if row is None:  # unknown, or revoked before: idempotent
            row = cur.execute(
                f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = %s", (token_id,)
            ).fetchone()
            if row is None:
                raise TokenNotFound("token not found")
            return row
    _audit(
        u,
        actor,
        "token.revoke",
        {"id": token_id},
        {"id": token_id, "revoked": True},
        target=f"token:{token_id}",
    )
    u.emit("identity.token_revoked", access_pb2.TokenRevoked(token_id=token_id), await_publish=True)
    return row


def lookup_token(u: UnitOfWork, token_id: str) -> dict[str, Any]:
    token_id = _token_id(token_id)
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {TOKEN_COLUMNS}, secret_hash FROM api_tokens WHERE id = %s", (token_id,)
        ).fetchone()
    if row is None:
        raise TokenNotFound("token not found")
    return row


def touch_token(u: UnitOfWork, token_id: str, address: str) -> None:
    """Record a use; cheap and never contended (a use older than the stored one is dropped)."""
    u.conn.execute(
        "UPDATE api_tokens SET last_used_at = now(), last_used_address = %s"
        " WHERE id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 second')",
        (rules.audit_address(address), _token_id(token_id)),
    )


# -- allowlist ----------------------------------------------------------------------------------


def get_allowlist(u: UnitOfWork) -> dict[str, Any]:
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT cidrs, updated_at, updated_by FROM admin_allowlist").fetchone()
    return row or {"cidrs": [], "updated_at": None, "updated_by": ""}


def set_allowlist(
    u: UnitOfWork, cidrs: list[str], *, actor: str, caller_address: str, confirm_lockout: bool
) -> dict[str, Any]:
    """Replace the allowlist. InvalidToken (INVALID_ARGUMENT) names the bad entries;
    WouldLockOut when the caller's own address would be refused and the change is unconfirmed.

    An empty, unknown or unparsable ``caller_address`` counts as refused by any non-empty
    list: who cannot say where they are must confirm (operators, who never pass the
    gateway, send confirm_lockout)."""
    new = rules.validate_cidrs(list(cidrs))
    if not confirm_lockout and not rules.address_allowed(caller_address, new):
        shown = caller_address[:64] if caller_address.isprintable() else ""
        raise WouldLockOut(
            (
                f"the new allowlist excludes your own address {shown}; "
                if shown
                else "the new allowlist would refuse a caller whose address is unknown; "
            )
            + "send confirm_lockout to apply it anyway"
        )
    old = u.conn.execute("SELECT cidrs FROM admin_allowlist FOR UPDATE").fetchone()
    old_cidrs = list(old[0]) if old else []
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO admin_allowlist (singleton, cidrs, updated_by) VALUES (true, %s, %s)"
            " ON CONFLICT (singleton) DO UPDATE SET cidrs = excluded.cidrs,"
            " updated_by = excluded.updated_by, updated_at = now()"
            " RETURNING cidrs, updated_at, updated_by",
            (new, actor[:200]),
        ).fetchone()
    _audit(u, actor, "allowlist.set", {"cidrs": old_cidrs}, {"cidrs": new}, caller_address)
    u.emit("identity.allowlist_changed", access_pb2.AllowlistChanged(cidrs=new), await_publish=True)
    return row


def list_audit(u: UnitOfWork, limit: int) -> list[dict[str, Any]]:
    """The newest entries of the tenant's audit trail (ListAccessAudit; ListAudit pages)."""
    limit = 50 if limit <= 0 else min(limit, 500)
    rows = audit_log.list_entries(u.conn, audit_log.Filters(), limit, None)
    return [
        {
            "at": r["at"],
            "actor": r["actor_value"] or r["actor"],
            "action": r["action"],
            "address": r["client_address"],
            "old_value": r["old_value"],
            "new_value": r["new_value"],
        }
        for r in rows
    ]
