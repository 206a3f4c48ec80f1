"""Fleet migration: every tenant database of every service, in parallel, resumable.

Each job checks what its database still needs; current databases are skipped with one
query. An interrupted run leaves every database at a recorded version (one transaction per
migration), so running it again finishes the work. Each job also checks that PUBLIC cannot
connect to its database, and repairs the privileges when it can (``repaired``); a database
that stays open to PUBLIC is a failed job.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from ontrackio.core.config import Settings
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner, public_can_connect
from ontrackio.core.runtime import service_dir
from ontrackio.core.tenancy import Names


@dataclass
class JobReport:
    tenant: str
    service: str
    status: str  # migrated | current | failed
    applied: list[str] = field(default_factory=list)
    repaired: bool = False  # PUBLIC could connect; its privileges were re-applied
    error: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def provisioners(settings: Settings, services: Iterable[str]) -> dict[str, Provisioner]:
    clusters = Clusters(settings)
    return {
        s: Provisioner(
            s,
            clusters,
            mig.for_service(service_dir(s)),
            settings.deployment,
            settings.tenant_role_secret.get_secret_value(),
        )
        for s in services
    }


def _job(p: Provisioner, slug: str, placement: str) -> JobReport:
    start = time.perf_counter()
    names = Names(p.names.deployment, p.service)
    db, role = names.tenant_database(slug), names.tenant_role(slug)
    repaired = False
    try:
        with p.clusters.admin_connect(placement, db) as conn:
            if public_can_connect(conn, db):  # one query on the connection the job needs anyway
                repaired = p.repair_public_access(placement, db, role)
            applied = (
                mig.migrate(conn, p.migrations, role) if mig.pending(conn, p.migrations) else []
            )
        return JobReport(
            slug,
            p.service,
            "migrated" if applied else "current",
            applied,
            repaired,
            seconds=time.perf_counter() - start,
        )
    except Exception as exc:  # noqa: BLE001 - reported per tenant, the fleet goes on
        return JobReport(
            slug,
            p.service,
            "failed",
            repaired=repaired,
            error=f"{type(exc).__name__}: {exc}"[:300],
            seconds=time.perf_counter() - start,
        )


def migrate_fleet(
    settings: Settings,
    tenants: list[tuple[str, str]],
    *,
    services: Iterable[str],
    concurrency: int | None = None,
    templates: bool = True,
) -> list[JobReport]:
    """Migrate the templates, then every (slug, placement) for every service."""
    provs = provisioners(settings, services)
    reports: list[JobReport] = []
    if templates:
        for p in provs.values():
            for placement in p.clusters.names:
                start = time.perf_counter()
                try:
                    applied = p.ensure_template(placement)
                except Exception as exc:  # noqa: BLE001 - reported; tenants there will fail too
                    reports.append(
                        JobReport(
                            f"(template@{placement})",
                            p.service,
                            "failed",
                            error=f"{type(exc).__name__}: {exc}"[:300],
                        )
                    )
                    continue
                if applied:
                    reports.append(
                        JobReport(
                            f"(template@{placement})",
                            p.service,
                            "migrated",
                            applied,
                            seconds=time.perf_counter() - start,
                        )
                    )
    jobs = [(p, slug, placement) for slug, placement in tenants for p in provs.values()]
    with ThreadPoolExecutor(max_workers=concurrency or settings.migrate_concurrency) as pool:
        return reports + list(pool.map(lambda j: _job(*j), jobs))
