"""The control database: the tenant registry, its saga progress and its audit trail
(``core/audit``, targets ``tenant:<id>``). Its key store is identity/keystore.py.

A custom domain is stored unverified and routes nowhere (``by_domain`` does not find it)
until it is verified: by the tenant, who publishes a DNS TXT challenge
(``identity/sso/domains.py``), or by an operator (``verify_domain``). Several tenants may
claim one name; one at most has it verified (control migration 0006).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ontrackio.catalogue import SERVICES
from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.directory import TenantInfo
from ontrackio.core.runtime import Runtime
from ontrackio.core.tenancy import Names
from ontrackio.identity.domain import tenants as rules
from ontrackio.identity.errors import DomainNotFound, DomainTaken, TenantExists, TenantNotFound
from ontrackio.identity.v1 import events_pb2

MIGRATIONS_DIR = Path(__file__).resolve().parent / "control_migrations"

TENANT_COLUMNS = """t.id, t.slug, t.name, t.tier, t.status, t.region, t.placement, t.created_at,
    t.delete_after,
    coalesce((SELECT array_agg(d.domain ORDER BY d.domain) FROM tenant_domains d
              WHERE d.tenant_id = t.id AND d.verified), '{}') AS domains,
    coalesce((SELECT array_agg(d.domain ORDER BY d.domain) FROM tenant_domains d
              WHERE d.tenant_id = t.id AND NOT d.verified), '{}') AS unverified_domains,
    coalesce((SELECT jsonb_agg(jsonb_build_object('service', s.service, 'state', s.state,
              'attempts', s.attempts, 'last_error', s.last_error, 'updated_at', s.updated_at)
              ORDER BY s.service) FROM tenant_services s WHERE s.tenant_id = t.id), '[]')
              AS services"""


def control_migrations() -> list[mig.Migration]:
    return mig.load([("core", mig.CORE_DIR), ("control", MIGRATIONS_DIR)])


class Control:
    """Registry operations, each in one transaction on the control database."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.names = Names(rt.settings.deployment, "identity")
        self.placement = rt.settings.pg_control_cluster

    def ensure(self) -> list[str]:
        """Create and migrate the control database (idempotent; run at process start)."""
        return self.rt.provisioner.ensure_database(
            self.placement,
            self.names.control_database,
            self.names.control_role,
            control_migrations(),
        )

    def _conninfo(self) -> str:
        return self.rt.clusters.role_conninfo(
            self.placement, self.names.control_database, self.names.control_role
        )

    def uow(self):
        return self.rt.dbs.unit_of_work_at(
            f"{self.placement}/{self.names.control_database}", "", self._conninfo
        )

    # -- reads ------------------------------------------------------------------------------

    def _fetch(self, conn: psycopg.Connection, where: str, args: tuple) -> list[dict[str, Any]]:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                f"SELECT {TENANT_COLUMNS} FROM tenants t WHERE {where} ORDER BY t.slug", args
            ).fetchall()

    def get(self, slug: str) -> dict[str, Any]:
        with self.uow() as u:
            rows = self._fetch(u.conn, "t.slug = %s AND t.status <> 'deleted'", (slug,))
        if not rows:
            raise TenantNotFound(f"tenant {slug!r} not found")
        return rows[0]

    def verified_domains(self, slug: str) -> list[str]:
        """The tenant's verified domains (what SSO sign-in admits), read fresh."""
        with self.uow() as u:
            rows = u.conn.execute(
                "SELECT d.domain FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id"
                " WHERE t.slug = %s AND t.status <> 'deleted' AND d.verified ORDER BY d.domain",
                (slug,),
            ).fetchall()
        return [r[0] for r in rows]

    def list(self, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self.uow() as u:
            return self._fetch(u.conn, "%s OR t.status <> 'deleted'", (include_deleted,))

    def by_domain(self, domain: str) -> dict[str, Any]:
        with self.uow() as u:
            rows = self._fetch(
                u.conn,
                "t.status <> 'deleted' AND t.id = "
                "(SELECT tenant_id FROM tenant_domains WHERE domain = %s AND verified)",
                (rules.normalise_domain(domain),),
            )
        if not rows:  # unknown and unverified alike: nothing tells them apart
            raise TenantNotFound("no tenant has that domain")
        return rows[0]

    def lookup(self, slug: str) -> TenantInfo | None:
        """The directory source for identity's own processes."""
        with self.uow() as u:
            row = u.conn.execute(
                "SELECT status, placement, tier, delete_after FROM tenants WHERE slug = %s"
                " AND status <> 'deleted'",
                (slug,),
            ).fetchone()
        return TenantInfo(slug, *row) if row else None

    # -- commands ---------------------------------------------------------------------------

    @staticmethod
    def audit(
        u: UnitOfWork,
        tenant_id,
        actor: str,
        action: str,
        old: Any,
        new: Any,
        *,
        outcome: str = "done",
    ) -> None:
        """An entry of the control audit trail about tenant `tenant_id`, in `u`'s transaction
        (the registry's changes here, its key store's in identity/keystore.py, its domain
        verifications in identity/sso/domains.py; `outcome` "refused" for a refused one)."""
        audit_log.append(
            u.conn,
            audit_log.Entry(
                actor,
                action,
                f"tenant:{tenant_id}",
                old,
                new,
                outcome=outcome,
                origin=origin.current(),
            ),
        )

    def create(self, t: rules.NewTenant, actor: str) -> dict[str, Any]:
        tenant_id = uuid.uuid4()
        try:
            with self.uow() as u:
                if t.domains:
                    taken = u.conn.execute(
                        "SELECT 1 FROM tenant_domains WHERE domain = ANY(%s) AND verified",
                        (list(t.domains),),
                    ).fetchone()
                    if taken:
                        raise DomainTaken("a domain is already used by another tenant")
                u.conn.execute(
                    "INSERT INTO tenants (id, slug, name, tier, status, region, placement)"
                    " VALUES (%s, %s, %s, %s, 'provisioning', %s, %s)",
                    (tenant_id, t.slug, t.name, t.tier, t.region, t.placement),
                )
                for domain in t.domains:
                    u.conn.execute(
                        "INSERT INTO tenant_domains (domain, tenant_id, verified)"
                        " VALUES (%s, %s, false)",
                        (domain, tenant_id),
                    )
                for service in SERVICES:
                    u.conn.execute(
                        "INSERT INTO tenant_services (tenant_id, service, state)"
                        " VALUES (%s, %s, 'pending')",
                        (tenant_id, service),
                    )
                self.audit(
                    u,
                    tenant_id,
                    actor,
                    "tenant.create",
                    None,
                    {
                        "slug": t.slug,
                        "name": t.name,
                        "tier": t.tier,
                        "domains": list(t.domains),
                        "placement": t.placement,
                    },
                )
                u.emit(
                    "identity.tenant_created",
                    events_pb2.TenantCreated(
                        slug=t.slug,
                        name=t.name,
                        tier=t.tier,
                        region=t.region,
                        placement=t.placement,
                    ),
                    tenant=t.slug,
                )
        except psycopg.errors.UniqueViolation as exc:
            if "tenant_domains" in str(exc.diag.table_name or ""):
                raise DomainTaken("a domain is already used by another tenant") from None
            raise TenantExists(f"tenant {t.slug!r} already exists") from None
        return self.get(t.slug)

    def change_status(self, slug: str, action: str, actor: str) -> dict[str, Any]:
        with self.uow() as u:
            row = u.conn.execute(
                "SELECT id, status FROM tenants WHERE slug = %s AND status <> 'deleted' FOR UPDATE",
                (slug,),
            ).fetchone()
            if row is None:
                raise TenantNotFound(f"tenant {slug!r} not found")
            target = rules.transition(action, row[1])
            if action == "delete":
                grace = timedelta(seconds=self.rt.settings.deletion_grace_seconds)
                u.conn.execute(
                    "UPDATE tenants SET status = 'deleting', delete_after = now() + %s,"
                    " updated_at = now() WHERE id = %s",
                    (grace, row[0]),
                )
            else:
                u.conn.execute(
                    "UPDATE tenants SET status = %s, updated_at = now() WHERE id = %s",
                    (target, row[0]),
                )
            self.audit(u, row[0], actor, f"tenant.{action}", {"status": row[1]}, {"status": target})
        self.rt.directory.forget(slug)
        return self.get(slug)

    def verify_domain(self, slug: str, domain: str, actor: str) -> dict[str, Any]:
        """Mark ``domain`` of tenant ``slug`` verified, so that it routes; idempotent.

        Raises TenantNotFound for an unknown or deleted tenant, DomainNotFound when the
        tenant has no such domain, InvalidTenant for a malformed domain."""
        domain = rules.normalise_domain(domain)
        with self.uow() as u:
            tenant = u.conn.execute(
                "SELECT id FROM tenants WHERE slug = %s AND status <> 'deleted'", (slug,)
            ).fetchone()
            if tenant is None:
                raise TenantNotFound(f"tenant {slug!r} not found")
            row = u.conn.execute(
                "SELECT verified FROM tenant_domains WHERE domain = %s AND tenant_id = %s"
                " FOR UPDATE",
                (domain, tenant[0]),
            ).fetchone()
            if row is None:
                raise DomainNotFound(f"tenant {slug!r} has no domain {domain!r}")
            if not row[0]:
                try:
                    u.conn.execute(
                        "UPDATE tenant_domains SET verified = true, verified_at = now(),"
                        " verified_by = %s, last_check_result = '' WHERE domain = %s"
                        " AND tenant_id = %s",
                        (actor[:200], domain, tenant[0]),
                    )
                except psycopg.errors.UniqueViolation:  # tenant_domains_verified
                    raise DomainTaken(f"domain {domain!r} is verified by another tenant") from None
                self.audit(
                    u,
                    tenant[0],
                    actor,
                    "tenant.domain_verify",
                    {"domain": domain, "verified": False},
                    {"domain": domain, "verified": True},
                )
        return self.get(slug)

    def start_due_deletions(self) -> list[str]:
        """Tenants whose grace period is over: emit tenant_deleted once for each."""
        with self.uow() as u:
            rows = u.conn.execute(
                "UPDATE tenants SET deletion_started_at = now() WHERE id IN ("
                " SELECT id FROM tenants WHERE status = 'deleting'"
                " AND deletion_started_at IS NULL AND delete_after <= now()"
                " FOR UPDATE SKIP LOCKED) RETURNING id, slug, placement"
            ).fetchall()
            for tenant_id, slug, placement in rows:
                self.audit(u, tenant_id, "system", "tenant.drop_databases", None, None)
                # Crypto-shredding: without its data keys, nothing the tenant left behind
                # (backups, a copy of a database) can be decrypted any more.
                shredded = u.conn.execute(
                    "DELETE FROM tenant_data_keys WHERE tenant_id = %s", (tenant_id,)
                ).rowcount
                self.audit(
                    u, tenant_id, "system", "tenant.keys_destroy", None, {"data_keys": shredded}
                )
                u.emit(
                    "identity.tenant_deleted",
                    events_pb2.TenantDeleted(slug=slug, placement=placement),
                    tenant=slug,
                )
        return [r[1] for r in rows]

    def record_service(
        self, event, state: str, *, error: str = "", schema_version: int = 0
    ) -> None:
        """Apply one service's saga report; activates or finishes deleting the tenant."""
        msg = event.message()
        with self.uow() as u:
            if not u.first_delivery(event):
                return
            row = u.conn.execute(
                "SELECT id, status FROM tenants WHERE slug = %s AND status <> 'deleted' FOR UPDATE",
                (msg.slug,),
            ).fetchone()
            if row is None:
                return  # a report about a tenant that no longer exists
            tenant_id, status = row
            if state == "failed":
                u.conn.execute(
                    "UPDATE tenant_services SET state = CASE WHEN state = 'ready' THEN state"
                    " ELSE 'failed' END, attempts = attempts + 1, last_error = %s,"
                    " updated_at = now() WHERE tenant_id = %s AND service = %s",
                    (error, tenant_id, msg.service),
                )
                return
            u.conn.execute(
                "UPDATE tenant_services SET state = %s,"
                " schema_version = greatest(schema_version, %s), last_error = '',"
                " updated_at = now() WHERE tenant_id = %s AND service = %s",
                (state, schema_version, tenant_id, msg.service),
            )
            states = dict(
                u.conn.execute(
                    "SELECT service, state FROM tenant_services WHERE tenant_id = %s", (tenant_id,)
                ).fetchall()
            )
            if status == "provisioning" and rules.all_services_in(states, "ready"):
                u.conn.execute(
                    "UPDATE tenants SET status = 'active', updated_at = now() WHERE id = %s",
                    (tenant_id,),
                )
                self.audit(
                    u,
                    tenant_id,
                    "system",
                    "tenant.activate",
                    {"status": status},
                    {"status": "active"},
                )
                u.emit(
                    "identity.tenant_activated",
                    events_pb2.TenantActivated(slug=msg.slug),
                    tenant=msg.slug,
                )
            elif status == "deleting" and rules.all_services_in(states, "dropped"):
                u.conn.execute(
                    "UPDATE tenants SET status = 'deleted', deleted_at = now(),"
                    " updated_at = now() WHERE id = %s",
                    (tenant_id,),
                )
                u.conn.execute("DELETE FROM tenant_domains WHERE tenant_id = %s", (tenant_id,))
                self.audit(
                    u,
                    tenant_id,
                    "system",
                    "tenant.deleted",
                    {"status": status},
                    {"status": "deleted"},
                )
        self.rt.directory.forget(msg.slug)
