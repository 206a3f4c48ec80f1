"""Tenant provisioning through the running system, and its raw PostgreSQL baselines."""

from __future__ import annotations

import subprocess
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.common import figure, log, median, percentile, wait_until
from ontrackio.catalogue import SERVICES
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.runtime import service_dir
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc

ACTIVE = ipb.TENANT_STATUS_ACTIVE
Ident = sql.Identifier
STALL_S = 60.0


def tenant_stub(stack) -> igrpc.TenantServiceStub:
    return igrpc.TenantServiceStub(stack.channel("identity", "operator"))


def create(stub, slug: str) -> None:
    stub.CreateTenant(
        ipb.CreateTenantRequest(slug=slug, name=f"Bench {slug}", tier=ipb.TIER_BUSINESS), timeout=10
    )


def create_and_wait(stub, slug: str, timeout: float = 60.0) -> float:
    """Seconds from CreateTenant until GetTenant says active (polled every 20 ms)."""
    t0 = time.perf_counter()
    create(stub, slug)
    wait_until(
        lambda: stub.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5).status == ACTIVE,
        timeout,
        0.02,
        f"tenant {slug} active",
    )
    return time.perf_counter() - t0


def activation_times(stack, slugs: list[str]) -> list[float]:
    """Per tenant, seconds from its registry row to its activation (control database)."""
    names = Names(stack.deployment, "identity")
    conninfo = make_conninfo(stack.pg_dsn, dbname=names.control_database)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM a.at - t.created_at) FROM tenants t JOIN audit.entries a"
            " ON a.target = 'tenant:' || t.id AND a.action = 'tenant.activate'"
            " WHERE t.slug = ANY(%s)",
            (slugs,),
        ).fetchall()
    return [float(r[0]) for r in rows]


def bulk(stack, slugs: list[str], timeout: float = 600.0) -> float:
    """Create every tenant back to back, then wait until all are active; total seconds."""
    stub = tenant_stub(stack)
    t0 = time.perf_counter()
    for slug in slugs:
        create(stub, slug)
    log(f"  {len(slugs)} CreateTenant calls returned after {time.perf_counter() - t0:.1f} s")
    wanted = set(slugs)
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while True:
        listed = stub.ListTenants(ipb.ListTenantsRequest(), timeout=30).tenants
        active = sum(1 for t in listed if t.slug in wanted and t.status == ACTIVE)
        if active == len(wanted):
            return time.perf_counter() - t0
        now = time.monotonic()
        if active != last:
            last, last_change = active, now
        elif now - last_change > STALL_S:
            raise TimeoutError(
                f"{active} of {len(wanted)} tenants active, then no progress for {STALL_S:.0f} s"
            )
        if now > deadline:
            raise TimeoutError(f"{active} of {len(wanted)} tenants active after {timeout:.0f} s")
        time.sleep(0.25)


# -- raw baselines ----------------------------------------------------------------------------


def _schema_files(service: str) -> list[str]:
    files = sorted((mig.CORE_DIR).glob("*.sql")) + sorted(
        (service_dir(service) / "migrations").glob("*.sql")
    )
    return [str(f) for f in files]


def _psql(dsn: str, db: str, files: list[str], deployment: str) -> None:
    # The audit migration reads the deployment from the session (as admin_connect sets it).
    conninfo = make_conninfo(dsn, dbname=db, options=f"-c ontrack.deployment={deployment}")
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo]
    for f in files:
        args += ["-f", f]
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def raw_baseline(admin_dsn: str, deployment: str, tenants: int) -> dict[str, float]:
    """Seconds per tenant of the raw ways to make its four migrated databases.

    clone: 4 × CREATE DATABASE … TEMPLATE of a template whose schema psql applied once;
    empty_psql: 4 × (CREATE DATABASE from template0, then psql -f the schema files).
    Scratch databases are named `<deployment>_raw…` and dropped here.
    """
    created: list[str] = []
    out: dict[str, float] = {}
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        try:
            templates = {}
            for s in SERVICES:
                tmpl = f"{deployment}_raw_{s}_tmpl"
                admin.execute(sql.SQL("CREATE DATABASE {}").format(Ident(tmpl)))
                created.append(tmpl)
                _psql(admin_dsn, tmpl, _schema_files(s), deployment)
                templates[s] = tmpl
            t0 = time.perf_counter()
            for i in range(tenants):
                for s in SERVICES:
                    db = f"{deployment}_raw_{s}_c{i}"
                    admin.execute(
                        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                            Ident(db), Ident(templates[s])
                        )
                    )
                    created.append(db)
            out["clone"] = (time.perf_counter() - t0) / tenants
            t0 = time.perf_counter()
            for i in range(tenants):
                for s in SERVICES:
                    db = f"{deployment}_raw_{s}_e{i}"
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(Ident(db)))
                    created.append(db)
                    _psql(admin_dsn, db, _schema_files(s), deployment)
            out["empty_psql"] = (time.perf_counter() - t0) / tenants
        finally:
            for db in created:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Ident(db)))
    return out


def template_vs_empty(
    clusters: Clusters, deployment: str, role_secret: str, service: str, slugs: list[str]
) -> dict[str, float]:
    """Seconds per database of Provisioner.provision with a template clone vs create-empty
    + migrate, alternating so both see the same server state. The databases stay (the
    caller's deployment owns and drops them)."""
    migrations = mig.for_service(service_dir(service))
    provs = {
        flag: Provisioner(service, clusters, migrations, deployment, role_secret, use_template=flag)
        for flag in (True, False)
    }
    provs[True].ensure_template("main")
    times: dict[bool, list[float]] = {True: [], False: []}
    for i, slug in enumerate(slugs):
        flag = i % 2 == 0
        t0 = time.perf_counter()
        provs[flag].provision(slug, "main")
        times[flag].append(time.perf_counter() - t0)
    return {
        "clone": median(times[True]),
        "empty_migrate": median(times[False]),
        "n": len(slugs) // 2,
    }


# -- figures ----------------------------------------------------------------------------------


def median_figure(times: list[float], raw: dict[str, float]) -> dict:
    med = median(times)
    base = min(raw.values())
    return figure(
        "tenant active, median (saga)",
        med,
        base,
        "s",
        "<= 3 s",
        med <= 3.0,
        f"{len(times)} tenants one after another: CreateTenant, then GetTenant every 20 ms "
        f"until active (max {max(times):.2f} s). Baseline = raw serial cost per tenant of "
        f"4 x CREATE DATABASE ... TEMPLATE (template built once with psql) = "
        f"{raw['clone']:.3f} s; 4 x (CREATE DATABASE + psql -f schema) = "
        f"{raw['empty_psql']:.3f} s; the smaller is the baseline",
    )


def bulk_figure(
    total: float,
    n: int,
    raw: dict[str, float],
    per_tenant_activation: list[float],
    provision_concurrency: str,
) -> dict:
    base = min(raw.values()) * n
    return figure(
        f"{n} tenants back to back (saga), total",
        total,
        base,
        "s",
        "report (no target in the issue)",
        True,
        f"{total / n:.3f} s per tenant. All CreateTenant calls first, then wait until all are "
        f"active; each tenant's time from registry row to activation: median "
        f"{median(per_tenant_activation):.2f} s, p99 {percentile(per_tenant_activation, 99):.2f} s "
        f"(queueing). Baseline = {n} x the raw per-tenant cost measured serially on fewer "
        f"tenants. Each worker provisions ONTRACK_PROVISION_CONCURRENCY={provision_concurrency} "
        "tenants at once",
    )


def template_figure(tv: dict[str, float], service: str) -> dict:
    return figure(
        "new database: template clone vs create-empty+migrate",
        tv["clone"],
        tv["empty_migrate"],
        "s/database",
        "ratio < 1 (cloning is faster)",
        tv["clone"] < tv["empty_migrate"],
        f"Provisioner.provision('{service}') with use_template=True vs False, median of "
        f"{tv['n']} each, alternating. Clone = role + CREATE DATABASE TEMPLATE + REASSIGN "
        f"OWNED + version check; empty = role + CREATE DATABASE + every migration. The "
        f"schemas are tiny today, so the gap will grow with the migration count",
    )
