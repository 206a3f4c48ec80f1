"""SAML state in the tenant's database (identity migration 0006): the IdP configuration,
our SP key pair, the AuthnRequest ids we issued and the replay cache of assertion ids.

Every configuration change is an audit entry in the same transaction; every refused
response is one too (``refused``, in a transaction of its own: the attempt rolled back).
The replay cache and the request ids live in the tenant database, so every identity process
sees them: consuming a request id is one ``DELETE … RETURNING`` and remembering an assertion
one ``INSERT … ON CONFLICT``, each atomic whatever process runs it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from psycopg.rows import dict_row

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.keys.reencrypt import EncryptedColumn
from ontrackio.identity.sso import pending
from ontrackio.identity.sso.saml import rules

SP_PRIVATE_KEY = EncryptedColumn("saml_sp_keys", "private_key")
SP_CERT_DAYS = 3650  # pinned by the IdP, not validated against a CA; rotate by replacing
REQUEST_TTL = dt.timedelta(minutes=10)
SWEEP_ROWS = 100  # expired rows removed per sign-in (keeps both tables small, never a scan)
CONFIG_FIELDS = (
    "idp_entity_id",
    "sso_url",
    "certificates",
    "email_attribute",
    "name_attribute",
    "groups_attribute",
    "allow_idp_initiated",
    "requested_authn_context",
    "authn_context_comparison",
    "updated_at",
    "updated_by",
)
CONFIG_COLUMNS = ", ".join(CONFIG_FIELDS)

Seal = Callable[[object, str], bytes]  # (row id, text) -> ciphertext
Unseal = Callable[[object, bytes], str]


def _audit(u: UnitOfWork, actor: str, action: str, old: Any, new: Any, outcome="done") -> None:
    audit_log.append(
        u.conn,
        audit_log.Entry(
            actor, action, "sso:saml", old, new, outcome=outcome, origin=origin.current()
        ),
    )


# -- configuration ------------------------------------------------------------------------------


def config_of(row: dict[str, Any]) -> rules.IdpConfig:
    return rules.IdpConfig(
        idp_entity_id=row["idp_entity_id"],
        sso_url=row["sso_url"],
        certificates=tuple(row["certificates"]),
        email_attribute=row["email_attribute"],
        name_attribute=row["name_attribute"],
        groups_attribute=row["groups_attribute"],
        allow_idp_initiated=row["allow_idp_initiated"],
        requested_authn_context=tuple(row["requested_authn_context"]),
        authn_context_comparison=row["authn_context_comparison"],
    )


def is_configured(u: UnitOfWork) -> bool:
    return bool(u.conn.execute("SELECT EXISTS (SELECT 1 FROM saml_config)").fetchone()[0])


def get_config(u: UnitOfWork) -> dict[str, Any] | None:
    with u.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {CONFIG_COLUMNS} FROM saml_config").fetchone()


def set_config(
    u: UnitOfWork, config: rules.IdpConfig, *, actor: str, action: str = "saml.config_set"
) -> dict[str, Any]:
    """Replace the tenant's IdP configuration (audited: old and new, certificates as
    fingerprints)."""
    old = get_config(u)
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO saml_config (singleton, idp_entity_id, sso_url, certificates,"
            " email_attribute, name_attribute, groups_attribute, allow_idp_initiated,"
            " requested_authn_context, authn_context_comparison, updated_by)"
            " VALUES (true, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (singleton) DO UPDATE SET idp_entity_id = excluded.idp_entity_id,"
            " sso_url = excluded.sso_url, certificates = excluded.certificates,"
            " email_attribute = excluded.email_attribute,"
            " name_attribute = excluded.name_attribute,"
            " groups_attribute = excluded.groups_attribute,"
            " allow_idp_initiated = excluded.allow_idp_initiated,"
            " requested_authn_context = excluded.requested_authn_context,"
            " authn_context_comparison = excluded.authn_context_comparison,"
            f" updated_by = excluded.updated_by, updated_at = now() RETURNING {CONFIG_COLUMNS}",
            (
                config.idp_entity_id,
                config.sso_url,
                list(config.certificates),
                config.email_attribute,
                config.name_attribute,
                config.groups_attribute,
                config.allow_idp_initiated,
                list(config.requested_authn_context),
                config.authn_context_comparison,
                actor[:200],
            ),
        ).fetchone()
    _audit(u, actor, action, config_of(old).audit_view() if old else None, config.audit_view())
    return row


# -- our key pair -------------------------------------------------------------------------------


def _new_key_pair(common_name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SP_CERT_DAYS))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def acs_inputs(
    u: UnitOfWork, unseal: Unseal
) -> tuple[dict[str, Any] | None, rules.SpKeyPair | None]:
    """(the configuration row or None, our key pair or None) in one statement: what the
    assertion consumer reads before it checks a response."""
    with u.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {', '.join('c.' + f for f in CONFIG_FIELDS)},"
            " c.singleton AS configured, k.id AS key_id, k.certificate AS key_certificate,"
            " k.private_key AS key_private FROM (SELECT 1) one"
            " LEFT JOIN saml_config c ON true LEFT JOIN saml_sp_keys k ON true"
        ).fetchone()
    assert row is not None  # (SELECT 1) has one row
    config = {f: row[f] for f in CONFIG_FIELDS} if row["configured"] else None
    key = (
        rules.SpKeyPair(row["key_certificate"], unseal(row["key_id"], bytes(row["key_private"])))
        if row["key_id"] is not None
        else None
    )
    return config, key


def sp_key_pair(u: UnitOfWork, unseal: Unseal) -> rules.SpKeyPair | None:
    row = u.conn.execute("SELECT id, certificate, private_key FROM saml_sp_keys").fetchone()
    if row is None:
        return None
    return rules.SpKeyPair(row[1], unseal(row[0], bytes(row[2])))


def ensure_sp_key_pair(u: UnitOfWork, seal: Seal, unseal: Unseal, name: str) -> rules.SpKeyPair:
    """The tenant's SP key pair, made (and audited) on first use; concurrent first uses keep
    one (the singleton constraint), the other's key is dropped unused."""
    found = sp_key_pair(u, unseal)
    if found is not None:
        return found
    cert_pem, key_pem = _new_key_pair(name)
    row_id = uuid.uuid4()
    inserted = u.conn.execute(
        "INSERT INTO saml_sp_keys (id, certificate, private_key) VALUES (%s, %s, %s)"
        " ON CONFLICT (singleton) DO NOTHING RETURNING id",
        (row_id, cert_pem, seal(row_id, key_pem)),
    ).fetchone()
    if inserted is None:
        found = sp_key_pair(u, unseal)
        assert found is not None  # the row that won the conflict
        return found
    fp = rules.fingerprint(rules.certificate_b64(cert_pem))
    _audit(u, "system", "saml.sp_key_created", None, {"certificate": fp})
    return rules.SpKeyPair(cert_pem, key_pem)


# -- requests and replay ------------------------------------------------------------------------


def issue_request(
    u: UnitOfWork,
    request_id: str,
    next_path: str,
    binding_hash: bytes,
    client_key: str,
    budget: pending.Budget,
) -> None:
    """Remember an AuthnRequest we issued, and the browser it went to; TooManyPendingLogins
    when this client holds its budget of unanswered ones (sso/pending.py)."""
    pending.make_room(u, "saml_requests", client_key, budget)
    u.conn.execute(
        "INSERT INTO saml_requests (id, next, expires_at, client_key, binding_hash)"
        " VALUES (%s, %s, now() + %s, %s, %s)",
        (request_id, next_path, REQUEST_TTL, client_key, binding_hash),
    )


@dataclass(frozen=True)
class IssuedRequest:
    next: str
    live: bool  # not expired
    binding_hash: bytes | None


def consume_request(u: UnitOfWork, request_id: str) -> IssuedRequest | None:
    """The request we issued with that id, used up whatever the caller decides; None when we
    never issued it or it was answered before (in any process)."""
    row = u.conn.execute(
        "DELETE FROM saml_requests WHERE id = %s RETURNING next, expires_at > now(), binding_hash",
        (request_id[:200],),
    ).fetchone()
    if row is None:
        return None
    return IssuedRequest(row[0], bool(row[1]), bytes(row[2]) if row[2] is not None else None)


def remember_assertion(
    u: UnitOfWork, issuer: str, assertion_id: str, expires_at: dt.datetime
) -> bool:
    """True the first time an assertion id of ``issuer`` is seen (until it expires); False
    for a replay. Atomic across processes: the primary key decides, a concurrent second
    insert waits for the first to commit and then sees the conflict."""
    row = u.conn.execute(
        "INSERT INTO saml_assertions_seen (issuer, assertion_id, expires_at)"
        " VALUES (%s, %s, %s)"
        " ON CONFLICT (issuer, assertion_id) DO UPDATE SET expires_at = excluded.expires_at,"
        " seen_at = now() WHERE saml_assertions_seen.expires_at <= now()"
        " RETURNING 1",
        (issuer, assertion_id, expires_at),
    ).fetchone()
    return row is not None


def sweep(u: UnitOfWork) -> None:
    """Drop a bounded number of expired requests and remembered assertions (one statement)."""
    expired = (
        "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t}"
        f" WHERE expires_at < now() - interval '1 minute' LIMIT {SWEEP_ROWS}))"
    )
    u.conn.execute(
        f"WITH r AS ({expired.format(t='saml_requests')}),"
        f" a AS ({expired.format(t='saml_assertions_seen')}) SELECT 1"
    )


def refused(u: UnitOfWork, cause: str, details: dict[str, Any]) -> None:
    """A refused response as an audit entry (outcome ``refused``; the cause, never the
    response itself or anything secret)."""
    _audit(u, "anonymous", "saml.response_refused", None, {"cause": cause, **details}, "refused")
