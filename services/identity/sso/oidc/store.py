"""The tenant's OIDC provider configurations and pending logins (identity migration 0007).

Configurations: one row per provider; the client secret is sealed with the tenant's data
key by the caller's ``seal`` (FieldCipher, bound to this table, column and provider) and
never returned, only whether one is set. Every change is an audit entry, without the secret.

Pending logins: created by ``start_login`` and taken at most once by ``take_login``
(``DELETE … RETURNING``: two callbacks with one state cannot both get it), found by a keyed
hash of the state; each lives ``ttl`` seconds. Expired ones are swept as new ones begin,
and at most ``max_pending`` live at once (the login endpoint is public).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.identity.errors import InvalidOidcConfig
from ontrackio.identity.sso import pending
from ontrackio.identity.sso.oidc import rules

SECRET_COLUMN = ("oidc_providers", "client_secret")
CONFIG_COLUMNS = (
    "provider, issuer, client_id, scopes, hosted_domains, entra_tenant, enabled,"
    " client_secret IS NOT NULL AS has_client_secret, created_at, updated_at, updated_by"
)

# (provider, secret) -> ciphertext, and back (core/keys/envelope.py, bound to the row).
Seal = Callable[[str, str], bytes]
Unseal = Callable[[str, bytes], str]


def _config_json(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A configuration as the audit trail keeps it: everything but the secret."""
    if row is None:
        return None
    return {
        "provider": row["provider"],
        "issuer": row["issuer"],
        "client_id": row["client_id"],
        "scopes": list(row["scopes"]),
        "hosted_domains": list(row["hosted_domains"]),
        "entra_tenant": row["entra_tenant"],
        "enabled": row["enabled"],
        "has_client_secret": row["has_client_secret"],
    }


def get_config(u: UnitOfWork, provider: str, *, for_update: bool = False) -> dict | None:
    """The stored configuration of ``provider`` (no secret), or None."""
    lock = " FOR UPDATE" if for_update else ""
    with u.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {CONFIG_COLUMNS} FROM oidc_providers WHERE provider = %s{lock}",
            (rules.validate_provider(provider),),
        ).fetchone()


def list_enabled(u: UnitOfWork) -> list[str]:
    """The providers a person may sign in with, in the order of rules.PROVIDERS."""
    rows = u.conn.execute(
        "SELECT provider FROM oidc_providers WHERE enabled AND client_secret IS NOT NULL"
    ).fetchall()
    found = {r[0] for r in rows}
    return [p for p in rules.PROVIDERS if p in found]


def set_config(
    u: UnitOfWork,
    config: rules.ProviderConfig,
    *,
    client_secret: str | None,
    seal: Seal,
    actor: str,
) -> dict[str, Any]:
    """Create or replace the configuration of ``config.provider``; audited
    (``oidc_provider.set``: old and new, the secret only as "set", "kept" or "unset").

    ``client_secret`` None (or "") keeps the stored secret; a first configuration needs one
    (InvalidOidcConfig), as every provider we speak to authenticates its clients.
    """
    old = get_config(u, config.provider, for_update=True)
    if client_secret:
        sealed = seal(config.provider, rules.validate_client_secret(client_secret))
    elif old is None or not old["has_client_secret"]:
        raise InvalidOidcConfig("client_secret is required (the IdP's secret for this client)")
    else:
        sealed = None
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO oidc_providers (provider, issuer, client_id, client_secret, scopes,"
            " hosted_domains, entra_tenant, enabled, updated_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (provider) DO UPDATE SET issuer = excluded.issuer,"
            " client_id = excluded.client_id,"
            " client_secret = coalesce(excluded.client_secret, oidc_providers.client_secret),"
            " scopes = excluded.scopes, hosted_domains = excluded.hosted_domains,"
            " entra_tenant = excluded.entra_tenant, enabled = excluded.enabled,"
            " updated_by = excluded.updated_by, updated_at = now()"
            f" RETURNING {CONFIG_COLUMNS}",
            (
                config.provider,
                config.issuer,
                config.client_id,
                sealed,
                list(config.scopes),
                list(config.hosted_domains),
                config.entra_tenant,
                config.enabled,
                actor[:200],
            ),
        ).fetchone()
    new = _config_json(row)
    assert new is not None
    new["client_secret"] = "set" if sealed is not None else "kept"
    audit_log.append(
        u.conn,
        audit_log.Entry(
            actor,
            "oidc_provider.set",
            f"oidc:{config.provider}",
            _config_json(old),
            new,
            origin=origin.current(),
        ),
    )
    return row


def client_secret(u: UnitOfWork, provider: str, unseal: Unseal) -> str | None:
    row = u.conn.execute(
        "SELECT client_secret FROM oidc_providers WHERE provider = %s", (provider,)
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return unseal(provider, bytes(row[0]))


def config_of(row: dict[str, Any]) -> rules.ProviderConfig:
    return rules.ProviderConfig(
        provider=row["provider"],
        issuer=row["issuer"],
        client_id=row["client_id"],
        scopes=tuple(row["scopes"]),
        hosted_domains=tuple(row["hosted_domains"]),
        entra_tenant=row["entra_tenant"],
        enabled=row["enabled"],
    )


# -- pending logins ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """A login just begun: what goes to the provider (state, nonce, PKCE challenge) and to
    the browser (the binding, as a cookie). Secrets: never logged."""

    state: str
    nonce: str
    code_verifier: str
    binding: str
    expires_at: datetime


@dataclass(frozen=True)
class Pending:
    provider: str
    binding_hash: bytes
    nonce: str
    code_verifier: str
    redirect_uri: str
    next: str
    expires_at: datetime


def start_login(
    u: UnitOfWork,
    key: bytes,
    *,
    provider: str,
    redirect_uri: str,
    next: str,
    ttl_seconds: int,
    client_key: str,
    budget: pending.Budget,
    now: datetime | None = None,
) -> Started:
    """A new pending login; TooManyPendingLogins when this client holds its budget of them
    (sso/pending.py)."""
    now = now or datetime.now(UTC)
    pending.make_room(u, "oidc_logins", client_key, budget)
    started = Started(
        state=rules.new_state(),
        nonce=rules.new_nonce(),
        code_verifier=rules.new_code_verifier(),
        binding=rules.new_state(),
        expires_at=now + timedelta(seconds=ttl_seconds),
    )
    u.conn.execute(
        "INSERT INTO oidc_logins (state_hash, provider, binding_hash, nonce, code_verifier,"
        " redirect_uri, next, created_at, expires_at, client_key)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            rules.state_key(key, started.state),
            provider,
            rules.binding_hash(key, started.binding),
            started.nonce,
            started.code_verifier,
            redirect_uri,
            next,
            now,
            started.expires_at,
            client_key,
        ),
    )
    return started


def take_login(u: UnitOfWork, key: bytes, state: str) -> Pending | None:
    """The pending login of ``state``, removed (single use); None if there is none (never
    issued, already taken, or swept). The caller checks its expiry, browser and provider."""
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "DELETE FROM oidc_logins WHERE state_hash = %s RETURNING provider, binding_hash,"
            " nonce, code_verifier, redirect_uri, next, expires_at",
            (rules.state_key(key, state),),
        ).fetchone()
    if row is None:
        return None
    return Pending(
        provider=row["provider"],
        binding_hash=bytes(row["binding_hash"]),
        nonce=row["nonce"],
        code_verifier=row["code_verifier"],
        redirect_uri=row["redirect_uri"],
        next=row["next"],
        expires_at=row["expires_at"],
    )
