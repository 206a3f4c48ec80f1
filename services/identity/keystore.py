"""The key store of envelope encryption: every service's data keys of every tenant, wrapped,
in the control database (table ``tenant_data_keys``, control_migrations/0004).

- A service's first use of a tenant's keys (``ring``) generates version 1 at the KMS under
  the tenant's KEK (its own key with BYO-KMS, else the platform's); the plaintext is
  dropped at once: only the service that asked unwraps it, at the KMS, itself.
- ``set_key`` switches a tenant to a customer-managed key after a test encrypt and decrypt
  with it; ``rewrap_step`` (identity's worker, rate-limited) then re-wraps its data keys
  under the new key, resumably: each row names the KEK it is under now, so a crash leaves
  rows under either key, all readable, and the next step goes on.
- ``rotate`` adds a data key version for every service and emits
  ``identity.data_keys_rotated``; every service re-encrypts its older rows.
- ``request_rewrap`` re-wraps every data key of a tenant under the newest version of its
  KEK (after the KEK itself was rotated).
- Deleting a tenant destroys its rows (``Control.start_due_deletions``): its backups and
  any copy of its databases can no longer be decrypted.

KMS calls are made outside any transaction, except the re-wrap of rows the step has locked.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from ontrackio.catalogue import SERVICES
from ontrackio.core.errors import InvalidArgument, KeyUnavailable
from ontrackio.core.keys.kms import InvalidKey, KeyProvider, check_context_of, context_of
from ontrackio.core.keys.ring import KeyRing, WrappedKey
from ontrackio.identity.control import Control
from ontrackio.identity.domain import keys as rules
from ontrackio.identity.errors import CustomerKeyRefused, TenantNotFound
from ontrackio.identity.v1 import events_pb2

log = logging.getLogger(__name__)

MAX_KEY_REF_CHARS = 2048
# A data key the KMS refused to re-wrap is tried again after this long, behind the others.
REWRAP_RETRY_SECONDS = 10.0

_PENDING = """(k.kek <> coalesce(t.key_ref, %(platform)s)
               OR (t.key_rewrap_after IS NOT NULL AND k.wrapped_at < t.key_rewrap_after))"""


class KeyStore:
    def __init__(self, control: Control, kms: KeyProvider, deployment: str):
        self.control = control
        self.kms = kms
        self.deployment = deployment

    # -- reads ------------------------------------------------------------------------------

    def _tenant(self, conn, slug: str, lock: bool = False) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT id, tier, key_ref, key_changed_at FROM tenants"
            " WHERE slug = %s AND status <> 'deleted'" + (" FOR UPDATE" if lock else ""),
            (slug,),
        ).fetchone()
        if row is None:
            raise TenantNotFound(f"tenant {slug!r} not found")
        return row

    def _rows(self, conn, tenant_id, service: str) -> list[WrappedKey]:
        return [
            WrappedKey(v, kek, bytes(w))
            for v, kek, w in conn.execute(
                "SELECT version, kek, wrapped FROM tenant_data_keys"
                " WHERE tenant_id = %s AND service = %s ORDER BY version",
                (tenant_id, service),
            )
        ]

    def ring(self, slug: str, service: str) -> KeyRing:
        """`service`'s wrapped data keys of tenant `slug`, generating version 1 on first use.
        Raises TenantNotFound, KeyUnavailable (the KEK cannot generate now)."""
        if service not in SERVICES:
            raise InvalidArgument(f"no service {service!r}")
        with self.control.uow() as u:
            tenant_id, _tier, key_ref, _ = self._tenant(u.conn, slug)
            rows = self._rows(u.conn, tenant_id, service)
        if not rows:
            self._generate(tenant_id, key_ref, service, 1)
            with self.control.uow() as u:
                rows = self._rows(u.conn, tenant_id, service)
        return KeyRing(str(tenant_id), rows[-1].version, tuple(rows))

    def _generate(self, tenant_id, key_ref: str | None, service: str, version: int) -> bool:
        """Generate and store `service`'s data key `version`; False if another process
        stored it first (theirs is kept)."""
        kek = rules.target_kek(key_ref, self.kms.platform_key())
        key = self.kms.generate_data_key(
            kek, context_of(self.deployment, str(tenant_id), service, version)
        )
        with self.control.uow() as u:
            cur = u.conn.execute(
                "INSERT INTO tenant_data_keys (tenant_id, service, version, kek, wrapped)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (tenant_id, service, version, kek, key.wrapped),
            )
            return cur.rowcount == 1

    def status(self, slug: str) -> dict[str, Any]:
        """The tenant's key: its KEK, whether it is the customer's, re-wrap progress and
        each service's data key versions."""
        platform = self.kms.platform_key()
        with self.control.uow() as u:
            tenant_id, _tier, key_ref, changed_at = self._tenant(u.conn, slug)
            total, pending = u.conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE " + _PENDING + ")"
                " FROM tenant_data_keys k JOIN tenants t ON t.id = k.tenant_id"
                " WHERE k.tenant_id = %(tenant)s",
                {"platform": platform, "tenant": tenant_id},
            ).fetchone()
            versions = u.conn.execute(
                "SELECT service, array_agg(version ORDER BY version) FROM tenant_data_keys"
                " WHERE tenant_id = %s GROUP BY service ORDER BY service",
                (tenant_id,),
            ).fetchall()
        return {
            "provider": self.kms.name,
            "kek": rules.target_kek(key_ref, platform),
            "customer_managed": key_ref is not None,
            "state": rules.state(pending),
            "rewrapped": total - pending,
            "total": total,
            "services": [(s, list(v)) for s, v in versions],
            "changed_at": changed_at,
            "tenant_id": str(tenant_id),
        }

    # -- commands ---------------------------------------------------------------------------

    def set_key(self, slug: str, key_ref: str, actor: str) -> dict[str, Any]:
        """Switch the tenant to the customer's key `key_ref` ("" = back to the platform's).

        Raises CustomerKeyRefused (tier, or the test encrypt and decrypt failed: the message
        names the cause), InvalidKey (malformed, or a region that is not allowed)."""
        key_ref = (key_ref or "").strip()
        if len(key_ref) > MAX_KEY_REF_CHARS:
            raise InvalidArgument(f"key_arn must be at most {MAX_KEY_REF_CHARS} characters")
        with self.control.uow() as u:
            tenant_id, tier, old, _ = self._tenant(u.conn, slug)
        if key_ref:
            rules.check_byo_allowed(slug, tier)
            if key_ref == self.kms.platform_key():
                raise CustomerKeyRefused("that is the platform's key, not a key of your own")
            try:
                self.kms.check(key_ref, check_context_of(self.deployment, str(tenant_id)))
            except KeyUnavailable as exc:
                raise CustomerKeyRefused(
                    f"the key failed a test encrypt and decrypt ({exc.cause.replace('_', ' ')});"
                    " see docs/keys.md for the key policy to grant"
                ) from None
        new = key_ref or None
        with self.control.uow() as u:
            tenant_id, _tier, old, _ = self._tenant(u.conn, slug, lock=True)
            if old != new:
                try:
                    u.conn.execute(
                        "UPDATE tenants SET key_ref = %s, key_changed_at = now(),"
                        " updated_at = now() WHERE id = %s",
                        (new, tenant_id),
                    )
                except psycopg.errors.UniqueViolation:
                    raise CustomerKeyRefused("that key already protects another tenant") from None
                self._retry_now(u, tenant_id)
                Control.audit(
                    u,
                    tenant_id,
                    actor,
                    "tenant.key_set",
                    {"key": old or "platform"},
                    {"key": new or "platform"},
                )
        return self.status(slug)

    @staticmethod
    def _retry_now(u, tenant_id) -> None:
        """A new target for the tenant's keys: earlier refusals no longer hold them back."""
        u.conn.execute(
            "UPDATE tenant_data_keys SET rewrap_refused_at = NULL WHERE tenant_id = %s",
            (tenant_id,),
        )

    def rotate(self, slug: str, actor: str) -> dict[str, Any]:
        """A new data key version for every service; their old rows are re-encrypted by
        each service in the background (identity.data_keys_rotated)."""
        with self.control.uow() as u:
            tenant_id, _tier, key_ref, _ = self._tenant(u.conn, slug)
            current = dict(
                u.conn.execute(
                    "SELECT service, max(version) FROM tenant_data_keys WHERE tenant_id = %s"
                    " GROUP BY service",
                    (tenant_id,),
                ).fetchall()
            )
        added = {}
        for service in SERVICES:
            version = current.get(service, 0) + 1
            self._generate(tenant_id, key_ref, service, version)
            added[service] = version
        with self.control.uow() as u:
            Control.audit(u, tenant_id, actor, "tenant.data_keys_rotate", current, added)
            u.emit("identity.data_keys_rotated", events_pb2.DataKeysRotated(slug=slug), tenant=slug)
        return self.status(slug)

    def request_rewrap(self, slug: str, actor: str) -> dict[str, Any]:
        """Re-wrap every data key of the tenant under the newest version of its KEK."""
        with self.control.uow() as u:
            tenant_id, *_ = self._tenant(u.conn, slug, lock=True)
            u.conn.execute(
                "UPDATE tenants SET key_rewrap_after = now(), updated_at = now() WHERE id = %s",
                (tenant_id,),
            )
            self._retry_now(u, tenant_id)
            Control.audit(u, tenant_id, actor, "tenant.key_rewrap", None, None)
        return self.status(slug)

    def rewrap_step(self, limit: int) -> tuple[int, int]:
        """Re-wrap at most `limit` data keys that are not under their tenant's KEK (or were
        wrapped before a requested re-wrap); (re-wrapped, refused).

        A key the KMS refuses (or a stored KEK no longer acceptable) is left as it is,
        readable as before, and marked: it waits REWRAP_RETRY_SECONDS and then queues
        behind every key never refused, so one tenant's unusable key never stalls the
        others. An unreachable KMS ends the step for the rest of that source key's rows
        (each would wait out the same timeouts)."""
        platform = self.kms.platform_key()
        done = refused = 0
        finished: set = set()
        down: set[str] = set()
        with self.control.uow() as u:
            rows = u.conn.execute(
                "SELECT k.tenant_id, k.service, k.version, k.kek, k.wrapped,"
                " coalesce(t.key_ref, %(platform)s)"
                " FROM tenant_data_keys k JOIN tenants t ON t.id = k.tenant_id"
                " WHERE t.status <> 'deleted' AND " + _PENDING + " AND (k.rewrap_refused_at IS NULL"
                "      OR k.rewrap_refused_at < now() - make_interval(secs => %(retry)s))"
                " ORDER BY k.rewrap_refused_at NULLS FIRST, k.wrapped_at"
                " LIMIT %(limit)s FOR UPDATE OF k SKIP LOCKED",
                {"platform": platform, "limit": limit, "retry": REWRAP_RETRY_SECONDS},
            ).fetchall()
            for tenant_id, service, version, kek, wrapped, target in rows:
                where = (tenant_id, service, version)
                if kek in down:
                    continue
                context = context_of(self.deployment, str(tenant_id), service, version)
                try:
                    new = self.kms.rewrap(kek, target, bytes(wrapped), context)
                except (KeyUnavailable, InvalidKey) as exc:
                    refused += 1
                    cause = getattr(exc, "cause", "invalid")
                    log.warning("re-wrap of a data key of tenant %s refused (%s)", tenant_id, cause)
                    u.conn.execute(
                        "UPDATE tenant_data_keys SET rewrap_refused_at = now()"
                        " WHERE tenant_id = %s AND service = %s AND version = %s",
                        where,
                    )
                    if cause == "unreachable":
                        down.add(kek)
                    continue
                u.conn.execute(
                    "UPDATE tenant_data_keys SET kek = %s, wrapped = %s, wrapped_at = now(),"
                    " rewrap_refused_at = NULL"
                    " WHERE tenant_id = %s AND service = %s AND version = %s",
                    (target, new, *where),
                )
                done += 1
                finished.add(tenant_id)
            for tenant_id in finished:
                left = u.conn.execute(
                    "SELECT count(*) FROM tenant_data_keys k JOIN tenants t ON t.id = k.tenant_id"
                    " WHERE k.tenant_id = %(tenant)s AND " + _PENDING,
                    {"platform": platform, "tenant": tenant_id},
                ).fetchone()[0]
                if not left:
                    Control.audit(u, tenant_id, "system", "tenant.key_rewrapped", None, None)
        return done, refused
