"""A tenant's own domains: add one (and get its DNS challenge), list, verify by DNS, remove.

Domains live in the control database (``tenant_domains``, control migrations 0003 and
0006), where routing (``Control.by_domain``) reads them. Each change is recorded twice: in
the control trail (``Control.audit``, target ``tenant:<id>``) in the transaction of the
change, then in the tenant's own trail (target ``domain:<name>``), which the tenant's admins
read. The two are separate databases, written one after the other (never holding a
connection to each at once): should the second write fail, the change and its control
entry stand, and the call fails.

Verification looks the challenge up in DNS outside any transaction (``dnscheck``), then
marks the domain verified; a refused check (record missing, wrong value, DNS unavailable,
domain taken) is recorded in both trails and on the domain (``last_check_result``).
"""

from __future__ import annotations

from typing import Any

from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import origin
from ontrackio.core.directory import TenantInfo
from ontrackio.core.errors import DomainError
from ontrackio.identity.control import Control
from ontrackio.identity.domain import domains as rules
from ontrackio.identity.errors import (
    DomainNotFound,
    DomainTaken,
    InvalidDomain,
    TenantNotFound,
    TooManyDomains,
)
from ontrackio.identity.sso.dnscheck import ChallengeLookup

MAX_DOMAINS_PER_TENANT = 50
MAX_RESULT_CHARS = 500
COLUMNS = (
    "domain, verified, challenge_token, added_at, added_by, verified_at, verified_by,"
    " last_checked_at, last_check_result"
)


def challengeable(text: str) -> str:
    """``text`` normalised, if its challenge name fits in DNS (a 253-character domain routes,
    but ``_ontrack-challenge.<it>`` would be too long to publish)."""
    domain = rules.normalise(text)
    if len(rules.challenge_name(domain)) > 253:
        raise InvalidDomain(
            f"domain {domain!r} is too long for its challenge record "
            f"{rules.CHALLENGE_LABEL}.<domain> (at most 253 characters)"
        )
    return domain


class DomainRegistry:
    """The DomainService's operations for one process (its control, databases, resolvers)."""

    def __init__(self, control: Control, dbs: Any, lookup: ChallengeLookup):
        self.control, self.dbs, self.lookup = control, dbs, lookup

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _tenant_id(u, slug: str):
        row = u.conn.execute(
            "SELECT id FROM tenants WHERE slug = %s AND status <> 'deleted'", (slug,)
        ).fetchone()
        if row is None:
            raise TenantNotFound(f"tenant {slug!r} not found")
        return row[0]

    @staticmethod
    def _row(u, tenant_id, domain: str, lock: bool = False) -> dict[str, Any] | None:
        with u.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                f"SELECT {COLUMNS} FROM tenant_domains WHERE tenant_id = %s AND domain = %s"
                + (" FOR UPDATE" if lock else ""),
                (tenant_id, domain),
            ).fetchone()

    @staticmethod
    def _verified_elsewhere(u, tenant_id, domain: str) -> bool:
        return (
            u.conn.execute(
                "SELECT 1 FROM tenant_domains WHERE domain = %s AND verified AND tenant_id <> %s",
                (domain, tenant_id),
            ).fetchone()
            is not None
        )

    def _tenant_audit(
        self,
        tenant: TenantInfo,
        actor: str,
        action: str,
        domain: str,
        old: Any,
        new: Any,
        outcome: str = "done",
    ) -> None:
        with self.dbs.unit_of_work(tenant) as u:
            audit_log.append(
                u.conn,
                audit_log.Entry(
                    actor,
                    action,
                    f"domain:{domain}",
                    old,
                    new,
                    outcome=outcome,
                    origin=origin.current(),
                ),
            )

    # -- operations ---------------------------------------------------------------------------

    def add(self, tenant: TenantInfo, text: str, actor: str) -> dict[str, Any]:
        """The tenant's domain ``text`` (normalised), added as pending with a fresh challenge,
        or as it was when the tenant has it already (then nothing is recorded); refused
        when another tenant has it verified, whether or not this tenant claimed it before.

        Raises InvalidDomain, DomainTaken (another tenant verified it), TooManyDomains."""
        domain = challengeable(text)
        with self.control.uow() as u:
            tenant_id = self._tenant_id(u, tenant.slug)
            # One claim at a time per tenant, so the count below cannot be raced past.
            u.conn.execute("SELECT 1 FROM tenants WHERE id = %s FOR UPDATE", (tenant_id,))
            if self._verified_elsewhere(u, tenant_id, domain):  # even over a claim of ours
                raise DomainTaken(f"domain {domain!r} is verified by another tenant")
            existing = self._row(u, tenant_id, domain)
            if existing is not None:
                return existing
            count = u.conn.execute(
                "SELECT count(*) FROM tenant_domains WHERE tenant_id = %s", (tenant_id,)
            ).fetchone()[0]
            if count >= MAX_DOMAINS_PER_TENANT:
                raise TooManyDomains(
                    f"a tenant has at most {MAX_DOMAINS_PER_TENANT} domains; remove one first"
                )
            with u.conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    "INSERT INTO tenant_domains (domain, tenant_id, verified, added_by)"
                    f" VALUES (%s, %s, false, %s) RETURNING {COLUMNS}",
                    (domain, tenant_id, actor[:200]),
                ).fetchone()
            self.control.audit(u, tenant_id, actor, "domain.add", None, {"domain": domain})
        self._tenant_audit(tenant, actor, "domain.add", domain, None, {"domain": domain})
        return row

    def list(self, tenant: TenantInfo) -> list[dict[str, Any]]:
        with self.control.uow() as u:
            tenant_id = self._tenant_id(u, tenant.slug)
            with u.conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    f"SELECT {COLUMNS} FROM tenant_domains WHERE tenant_id = %s ORDER BY domain",
                    (tenant_id,),
                ).fetchall()

    def _pending(self, tenant: TenantInfo, domain: str) -> tuple[Any, dict[str, Any]]:
        with self.control.uow() as u:
            tenant_id = self._tenant_id(u, tenant.slug)
            row = self._row(u, tenant_id, domain)
            if row is None:
                raise DomainNotFound(f"the tenant has no domain {domain!r}")
            if not row["verified"] and self._verified_elsewhere(u, tenant_id, domain):
                raise DomainTaken(f"domain {domain!r} is verified by another tenant")
        return tenant_id, row

    def check(self, tenant: TenantInfo, text: str, actor: str) -> dict[str, Any]:
        """Verify the tenant's domain ``text`` by its DNS challenge; the domain's row.

        A verified domain is returned as it is (no lookup). Raises DomainNotFound,
        InvalidDomain, DomainTaken, or the lookup's DomainChallengeMissing,
        DomainChallengeMismatch, DomainDnsUnavailable; each refusal is recorded."""
        domain = rules.normalise(text)
        try:
            tenant_id, row = self._pending(tenant, domain)
        except DomainTaken as exc:
            self._refused(tenant, actor, domain, exc)
            raise
        if row["verified"]:
            return row
        try:
            self.lookup.check(domain, row["challenge_token"])
        except DomainError as exc:
            self._refused(tenant, actor, domain, exc)
            raise
        try:
            with self.control.uow() as u:
                row = self._row(u, tenant_id, domain, lock=True)
                if row is None:  # removed while DNS was asked
                    raise DomainNotFound(f"the tenant has no domain {domain!r}")
                if row["verified"]:
                    return row
                with u.conn.cursor(row_factory=dict_row) as cur:
                    row = cur.execute(
                        "UPDATE tenant_domains SET verified = true, verified_at = now(),"
                        " verified_by = %s, last_checked_at = now(), last_check_result = ''"
                        f" WHERE tenant_id = %s AND domain = %s RETURNING {COLUMNS}",
                        (actor[:200], tenant_id, domain),
                    ).fetchone()
                self.control.audit(
                    u,
                    tenant_id,
                    actor,
                    "domain.verify",
                    {"domain": domain, "verified": False},
                    {"domain": domain, "verified": True, "method": "dns"},
                )
        except UniqueViolation:  # tenant_domains_verified: another tenant was first
            taken = DomainTaken(f"domain {domain!r} is verified by another tenant")
            self._refused(tenant, actor, domain, taken)
            raise taken from None
        self._tenant_audit(
            tenant,
            actor,
            "domain.verify",
            domain,
            {"verified": False},
            {"verified": True, "method": "dns"},
        )
        return row

    def _refused(self, tenant: TenantInfo, actor: str, domain: str, exc: DomainError) -> None:
        """Record a refused verification on the domain and in both trails (the refusal
        itself is raised by the caller)."""
        result = str(exc)[:MAX_RESULT_CHARS]
        why = {"domain": domain, "reason": exc.reason or type(exc).__name__, "found": result}
        with self.control.uow() as u:
            tenant_id = self._tenant_id(u, tenant.slug)
            u.conn.execute(
                "UPDATE tenant_domains SET last_checked_at = now(), last_check_result = %s"
                " WHERE tenant_id = %s AND domain = %s",
                (result, tenant_id, domain),
            )
            self.control.audit(u, tenant_id, actor, "domain.verify", None, why, outcome="refused")
        self._tenant_audit(tenant, actor, "domain.verify", domain, None, why, outcome="refused")

    def remove(self, tenant: TenantInfo, text: str, actor: str) -> dict[str, Any]:
        """Remove the tenant's domain ``text``: it stops routing and admitting. Raises
        DomainNotFound, InvalidDomain. The removed row is returned."""
        domain = rules.normalise(text)
        with self.control.uow() as u:
            tenant_id = self._tenant_id(u, tenant.slug)
            with u.conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    "DELETE FROM tenant_domains WHERE tenant_id = %s AND domain = %s"
                    f" RETURNING {COLUMNS}",
                    (tenant_id, domain),
                ).fetchone()
            if row is None:
                raise DomainNotFound(f"the tenant has no domain {domain!r}")
            old = {"domain": domain, "verified": row["verified"]}
            self.control.audit(u, tenant_id, actor, "domain.remove", old, None)
        self._tenant_audit(tenant, actor, "domain.remove", domain, old, None)
        return row
