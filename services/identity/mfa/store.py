"""A tenant's MFA factors in identity's tenant database: TOTP secrets, recovery codes,
passkeys, WebAuthn challenges (migration 0010). The rules are the pure modules beside this
one (totp, recovery, passkeys); this module reads and writes rows and audits each change
in the caller's transaction.

TOTP secrets are sealed with the tenant's data key (``TOTP_SECRET``, in the contract's
encrypted columns, bound to the user's row): the caller passes ``seal`` / ``unseal``
(core/keys/envelope.py) so this module needs no key. Recovery codes are kept as keyed
hashes (recovery.code_hash) under ``recovery_key``. A check that spends something (a TOTP
step, a recovery code, a challenge) is one conditional UPDATE or DELETE, so two requests
racing with the same code cannot both succeed.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.errors import MfaNotEnrolled, PasskeyRefused, TotpAlreadyEnrolled
from ontrackio.identity.mfa import recovery, totp

TOTP_SECRET = ("mfa_totp", "secret")
# (user id, secret) -> ciphertext, and back.
Seal = Callable[[str, str], bytes]
Unseal = Callable[[str, bytes], str]

# Factor names (sessions.factor, the audit trail).
TOTP = "totp"
PASSKEY = "passkey"
RECOVERY_CODE = "recovery-code"

CHALLENGE_SECONDS = 300
PENDING_TOTP_SECONDS = 15 * 60
USER_HANDLE_BYTES = 32


def audit(u: UnitOfWork, actor: str, action: str, user_id: Any, new: Any = None, **kw) -> None:
    audit_log.append(
        u.conn,
        audit_log.Entry(actor, action, f"user:{user_id}", None, new, origin=origin.current(), **kw),
    )


# -- what a user has ------------------------------------------------------------------------


def has_factor(u: UnitOfWork, user_id: Any) -> bool:
    """A confirmed TOTP or a passkey that is not flagged (recovery codes alone are not a
    factor: they are the way back to one)."""
    row = u.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = %s AND confirmed_at IS NOT NULL)"
        " OR EXISTS (SELECT 1 FROM mfa_passkeys WHERE user_id = %s AND flagged_at IS NULL)",
        (user_id, user_id),
    ).fetchone()
    return bool(row[0])


def summary(u: UnitOfWork, user_id: Any) -> dict[str, Any]:
    """What the user has enrolled: TOTP (confirmed or not), passkeys, recovery codes left."""
    row = u.conn.execute(
        "SELECT confirmed_at FROM mfa_totp WHERE user_id = %s", (user_id,)
    ).fetchone()
    left = u.conn.execute(
        "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = %s AND used_at IS NULL",
        (user_id,),
    ).fetchone()[0]
    return {
        "totp": row is not None and row[0] is not None,
        "totp_pending": row is not None and row[0] is None,
        "totp_confirmed_at": row[0] if row else None,
        "passkeys": list_passkeys(u, user_id),
        "recovery_codes_left": int(left),
    }


# -- TOTP -----------------------------------------------------------------------------------


def begin_totp(
    u: UnitOfWork,
    user_id: Any,
    session_id: str,
    seal: Seal,
    unseal: Unseal,
    actor: str,
    *,
    fresh: bool = False,
) -> str:
    """The secret to set up, not a factor until confirmed by the session that began it: a
    pending one this session began within PENDING_TOTP_SECONDS is given again (the page that
    shows the QR code may be reloaded, or a code mistyped, without the app's entry going
    stale), unless ``fresh``; else a new one replaces it. Another session of the user is
    never shown a pending secret: whoever began it (someone holding only the password, say)
    would share the factor. TotpAlreadyEnrolled when the user has a confirmed TOTP (remove
    it first)."""
    row = u.conn.execute(
        "SELECT confirmed_at, secret, created_at > now() - make_interval(secs => %s),"
        " pending_session FROM mfa_totp WHERE user_id = %s FOR UPDATE",
        (PENDING_TOTP_SECONDS, user_id),
    ).fetchone()
    if row is not None and row[0] is not None:
        raise TotpAlreadyEnrolled("an authenticator app is already set up; remove it first")
    if row is not None and row[2] and row[3] == session_id and not fresh:
        return unseal(str(user_id), bytes(row[1]))
    secret = totp.new_secret()
    u.conn.execute(
        "INSERT INTO mfa_totp (user_id, secret, pending_session) VALUES (%s, %s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, confirmed_at = NULL,"
        " last_step = NULL, created_at = now(), pending_session = excluded.pending_session",
        (user_id, seal(str(user_id), secret), session_id),
    )
    audit(u, actor, "mfa.totp.begin", user_id)
    return secret


def _check_totp(
    u: UnitOfWork,
    user_id: Any,
    code: str,
    unseal: Unseal,
    now: float,
    *,
    pending_session: str | None = None,
) -> bool:
    """The code checked against the user's confirmed secret, or with ``pending_session``
    the set-up that session began, its step spent when it matches. The row is locked: one
    code, one success."""
    typed = totp.parse_code(code)
    if pending_session is None:
        which, args = "confirmed_at IS NOT NULL", (user_id,)
    else:
        which, args = "confirmed_at IS NULL AND pending_session = %s", (user_id, pending_session)
    row = u.conn.execute(
        f"SELECT secret, last_step FROM mfa_totp WHERE user_id = %s AND {which} FOR UPDATE",
        args,
    ).fetchone()
    if row is None:
        missing = "no authenticator app is set up" if pending_session is None else None
        raise MfaNotEnrolled(missing or "start the set-up again")
    step = totp.matching_step(unseal(str(user_id), bytes(row[0])), typed, now, last_step=row[1])
    if step is None:
        return False
    u.conn.execute(
        "UPDATE mfa_totp SET last_step = %s"
        + (", confirmed_at = now(), pending_session = NULL" if pending_session else "")
        + " WHERE user_id = %s",
        (step, user_id),
    )
    return True


def confirm_totp(
    u: UnitOfWork, user_id: Any, session_id: str, code: str, unseal: Unseal, now: float
) -> bool:
    """The pending secret that ``session_id`` began becomes a factor when ``code`` is its
    current code (MfaNotEnrolled when this session began none, or another replaced it)."""
    return _check_totp(u, user_id, code, unseal, now, pending_session=session_id)


def verify_totp(u: UnitOfWork, user_id: Any, code: str, unseal: Unseal, now: float) -> bool:
    """Whether ``code`` is an accepted code of the user's TOTP (never the same step twice)."""
    return _check_totp(u, user_id, code, unseal, now)


def remove_totp(u: UnitOfWork, user_id: Any, actor: str) -> bool:
    rows = u.conn.execute("DELETE FROM mfa_totp WHERE user_id = %s RETURNING 1", (user_id,))
    removed = rows.fetchone() is not None
    if removed:
        audit(u, actor, "mfa.totp.remove", user_id)
    return removed


# -- recovery codes -------------------------------------------------------------------------


def new_recovery_codes(u: UnitOfWork, user_id: Any, key: bytes, actor: str) -> list[str]:
    """Ten new codes, replacing every earlier one; returned once, kept hashed."""
    codes = recovery.new_codes()
    u.conn.execute("DELETE FROM mfa_recovery_codes WHERE user_id = %s", (user_id,))
    with u.conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES (%s, %s)",
            [(user_id, recovery.code_hash(key, c)) for c in codes],
        )
    audit(u, actor, "mfa.recovery_codes.generate", user_id, {"count": len(codes)})
    return codes


def use_recovery_code(u: UnitOfWork, user_id: Any, code: str, key: bytes) -> int | None:
    """Spend ``code`` when it is one of the user's unused codes: the codes left, else None."""
    digest = recovery.code_hash(key, code)
    row = u.conn.execute(
        "UPDATE mfa_recovery_codes SET used_at = now()"
        " WHERE user_id = %s AND code_hash = %s AND used_at IS NULL RETURNING 1",
        (user_id, digest),
    ).fetchone()
    if row is None:
        return None
    return u.conn.execute(
        "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = %s AND used_at IS NULL",
        (user_id,),
    ).fetchone()[0]


# -- passkeys -------------------------------------------------------------------------------

PASSKEY_COLUMNS = (
    "id, name, aaguid, backed_up, transports, sign_count, flagged_at, created_at, last_used_at"
)


def user_handle(u: UnitOfWork, user_id: Any) -> bytes:
    """The user's WebAuthn user handle (random, made once; never the user id)."""
    row = u.conn.execute(
        "INSERT INTO mfa_user_handles (user_id, handle) VALUES (%s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET handle = mfa_user_handles.handle RETURNING handle",
        (user_id, secrets.token_bytes(USER_HANDLE_BYTES)),
    ).fetchone()
    return bytes(row[0])


def list_passkeys(u: UnitOfWork, user_id: Any) -> list[dict[str, Any]]:
    with u.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {PASSKEY_COLUMNS} FROM mfa_passkeys WHERE user_id = %s ORDER BY created_at",
            (user_id,),
        ).fetchall()


def credential_ids(u: UnitOfWork, user_id: Any) -> list[bytes]:
    rows = u.conn.execute(
        "SELECT credential_id FROM mfa_passkeys WHERE user_id = %s AND flagged_at IS NULL",
        (user_id,),
    ).fetchall()
    return [bytes(r[0]) for r in rows]


def add_passkey(u: UnitOfWork, user_id: Any, registered: Any, name: str, actor: str) -> str:
    """Keep a verified registration (passkeys.Registered) under ``name``; its id."""
    passkey_id = uuid.uuid4()
    row = u.conn.execute(
        "INSERT INTO mfa_passkeys (id, user_id, credential_id, public_key, sign_count, name,"
        " aaguid, transports, backed_up) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (credential_id) DO NOTHING RETURNING id",
        (
            passkey_id,
            user_id,
            registered.credential_id,
            registered.public_key,
            registered.sign_count,
            name,
            registered.aaguid,
            list(registered.transports),
            registered.backed_up,
        ),
    ).fetchone()
    if row is None:
        raise PasskeyRefused("this passkey is registered already", "credential-exists")
    audit(u, actor, "mfa.passkey.register", user_id, {"passkey": str(passkey_id), "name": name})
    return str(passkey_id)


def passkey_by_credential(u: UnitOfWork, credential_id: bytes) -> dict[str, Any] | None:
    """The stored passkey of a credential id, locked (its counter is about to move)."""
    with u.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT p.id, p.user_id, p.public_key, p.sign_count, p.flagged_at, p.name, x.active"
            " FROM mfa_passkeys p JOIN users x ON x.id = p.user_id"
            " WHERE p.credential_id = %s FOR UPDATE OF p",
            (credential_id,),
        ).fetchone()


def passkey_used(u: UnitOfWork, passkey_id: Any, sign_count: int) -> None:
    u.conn.execute(
        "UPDATE mfa_passkeys SET sign_count = %s, last_used_at = now() WHERE id = %s",
        (sign_count, passkey_id),
    )


def flag_passkey(u: UnitOfWork, row: dict[str, Any], reason: str) -> None:
    """Flag a passkey that may be cloned: refused from now on (audited)."""
    u.conn.execute(
        "UPDATE mfa_passkeys SET flagged_at = now() WHERE id = %s AND flagged_at IS NULL",
        (row["id"],),
    )
    audit(
        u,
        "system",
        "mfa.passkey.flag",
        row["user_id"],
        {"passkey": str(row["id"]), "name": row["name"], "reason": reason},
    )


def rename_passkey(u: UnitOfWork, user_id: Any, passkey_id: Any, name: str, actor: str) -> bool:
    row = u.conn.execute(
        "UPDATE mfa_passkeys SET name = %s WHERE id = %s AND user_id = %s RETURNING 1",
        (name, passkey_id, user_id),
    ).fetchone()
    if row is not None:
        audit(u, actor, "mfa.passkey.rename", user_id, {"passkey": str(passkey_id), "name": name})
    return row is not None


def remove_passkey(u: UnitOfWork, user_id: Any, passkey_id: Any, actor: str) -> bool:
    row = u.conn.execute(
        "DELETE FROM mfa_passkeys WHERE id = %s AND user_id = %s RETURNING name",
        (passkey_id, user_id),
    ).fetchone()
    if row is not None:
        audit(u, actor, "mfa.passkey.remove", user_id, {"passkey": str(passkey_id), "name": row[0]})
    return row is not None


def lock_factors(u: UnitOfWork, user_id: Any) -> None:
    """Before removing a factor: the user's row locked to the end of the transaction, so two
    removals at once (the app and the last passkey) are judged one after the other and the
    second sees the first's outcome (FOR NO KEY UPDATE: sign-ins may still add sessions)."""
    u.conn.execute("SELECT 1 FROM users WHERE id = %s FOR NO KEY UPDATE", (user_id,))


def reset(u: UnitOfWork, user_id: Any, actor: str, *, enrol_days: int) -> dict[str, int]:
    """Every factor of the user gone (an admin's reset): what was removed, audited. The user
    may enrol again for ``enrol_days`` from now (``users.mfa_enrol_by``), past the tenant's
    grace too."""
    counts = {}
    for table, what in (
        ("mfa_totp", "totp"),
        ("mfa_passkeys", "passkeys"),
        ("mfa_recovery_codes", "recovery_codes"),
    ):
        counts[what] = u.conn.execute(
            f"DELETE FROM {table} WHERE user_id = %s", (user_id,)
        ).rowcount
    u.conn.execute(
        "UPDATE users SET mfa_enrol_by = now() + make_interval(days => %s) WHERE id = %s",
        (enrol_days, user_id),
    )
    audit(u, actor, "mfa.reset", user_id, counts)
    return counts


# -- WebAuthn challenges --------------------------------------------------------------------


def put_challenge(
    u: UnitOfWork,
    purpose: str,
    challenge: bytes,
    *,
    session_id: str | None = None,
    binding_hash: bytes | None = None,
    user_id: Any = None,
    client_key: str = "",
    now: datetime | None = None,
) -> str:
    """Keep a challenge until it is used or CHALLENGE_SECONDS pass; its id. Expired ones of
    the tenant are swept on the way."""
    now = now or datetime.now(UTC)
    u.conn.execute("DELETE FROM mfa_challenges WHERE expires_at < %s", (now,))
    challenge_id = uuid.uuid4()
    u.conn.execute(
        "INSERT INTO mfa_challenges (id, purpose, challenge, session_id, binding_hash, user_id,"
        " client_key, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            challenge_id,
            purpose,
            challenge,
            session_id,
            binding_hash,
            user_id,
            client_key,
            now + timedelta(seconds=CHALLENGE_SECONDS),
        ),
    )
    return str(challenge_id)


def pending_challenges(u: UnitOfWork, client_key: str) -> int:
    return u.conn.execute(
        "SELECT count(*) FROM mfa_challenges WHERE client_key = %s AND expires_at > now()",
        (client_key,),
    ).fetchone()[0]


def take_challenge(
    u: UnitOfWork,
    challenge_id: str,
    purpose: str,
    *,
    session_id: str | None = None,
    binding_hash: bytes | None = None,
) -> dict[str, Any] | None:
    """The challenge, used up (deleted) in the same statement, when it is unexpired, of this
    purpose and bound to this session or browser; else None. Single use: a second attempt
    with the same challenge finds nothing."""
    try:
        challenge_uuid = uuid.UUID(challenge_id)
    except (ValueError, TypeError, AttributeError):
        return None
    with u.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "DELETE FROM mfa_challenges WHERE id = %s AND purpose = %s AND expires_at > now()"
            " AND session_id IS NOT DISTINCT FROM %s AND binding_hash IS NOT DISTINCT FROM %s"
            " RETURNING challenge, user_id",
            (challenge_uuid, purpose, session_id, binding_hash),
        ).fetchone()
