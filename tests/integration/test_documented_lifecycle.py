"""Tenant lifecycle as docs/architecture.md states it, on the real system: a deleted tenant
stays `deleting` with its databases intact until `delete_after`; a fleet migration that
fails for one tenant mid-run is reported and finished by running `ontrack migrate` again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import psycopg

from ontrackio.catalogue import SERVICES
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.extra_api import channel, extra_api
from tests.helpers import create_tenant, eventually

GRACE_SECONDS = 5


def tenant_databases(system, settings, slug: str) -> set[str]:
    """The names of `slug`'s databases that exist (one per service while it lives)."""
    wanted = [Names(settings.deployment, s).tenant_database(slug) for s in SERVICES]
    with psycopg.connect(system.pg_dsn) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", (wanted,)
        ).fetchall()
    return {r[0] for r in rows}


def registry_row(settings, slug: str) -> tuple[str, datetime | None]:
    """(status, deletion_started_at) of `slug`'s latest record in the control database."""
    control = Names(settings.deployment, "identity").control_database
    with Clusters(settings).admin_connect(settings.pg_control_cluster, control) as conn:
        return conn.execute(
            "SELECT status, deletion_started_at FROM tenants WHERE slug = %s"
            " ORDER BY created_at DESC LIMIT 1",
            (slug,),
        ).fetchone()


def test_a_deleted_tenant_keeps_its_databases_until_delete_after(system, channels, settings):
    """`delete` sets `deleting` with `delete_after = now + grace`; nothing is dropped before
    then, and once it passes identity's timer starts the drop and the tenant ends `deleted`.
    The delete goes through an identity api of its own whose grace is GRACE_SECONDS (the
    shared stack's is 0); the timer and every service's drop are the shared stack's."""
    slug = unique("dg")
    create_tenant(channels, slug)
    every = {Names(settings.deployment, s).tenant_database(slug) for s in SERVICES}
    assert tenant_databases(system, settings, slug) == every

    with extra_api(
        system, "identity", "identity-api-grace", ONTRACK_DELETION_GRACE_SECONDS=str(GRACE_SECONDS)
    ) as api:
        with channel(system, api) as ch:
            asked = datetime.now(UTC)
            t = igrpc.TenantServiceStub(ch).DeleteTenant(
                ipb.GetTenantRequest(slug=slug), timeout=10
            )
    assert t.status == ipb.TENANT_STATUS_DELETING
    delete_after = t.delete_after.ToDatetime(tzinfo=UTC)
    assert delete_after - asked > timedelta(seconds=GRACE_SECONDS - 1)

    # Within the grace (up to a second before its end, for clock and timer slack), the tenant
    # is `deleting`, no drop has started and every database is still there.
    stub = igrpc.TenantServiceStub(channels["identity"])
    samples = 0
    while datetime.now(UTC) < delete_after - timedelta(seconds=1):
        assert stub.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5).status == (
            ipb.TENANT_STATUS_DELETING
        )
        assert registry_row(settings, slug) == ("deleting", None)
        assert tenant_databases(system, settings, slug) == every
        samples += 1
        time.sleep(0.25)  # sampling a time window, not waiting for the system
    assert samples >= 2  # the window was observed, not skipped

    # After it: the drop starts (never before delete_after) and finishes.
    eventually(lambda: registry_row(settings, slug)[0] == "deleted", timeout=60)
    assert registry_row(settings, slug)[1] >= delete_after
    assert tenant_databases(system, settings, slug) == set()


# -- an interrupted fleet migration --------------------------------------------------------

# Core migration 0003 only sets the search_path of the audit trail's two SECURITY DEFINER
# functions, so it can be made pending again in a test tenant's databases (its row deleted,
# its effect undone) and re-applied by the real `ontrack migrate` with no test migration.
CORE_0003 = "core:0003_audit_definer_search_path"


def _admin(system, db: str) -> psycopg.Connection:
    conninfo = psycopg.conninfo.make_conninfo(system.pg_dsn, dbname=db)
    return psycopg.connect(conninfo, autocommit=True)


def make_0003_pending(system, db: str) -> None:
    with _admin(system, db) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE component = 'core' AND version = 3")
        conn.execute("ALTER FUNCTION audit.seal(integer) RESET search_path")


def seal_config(system, db: str) -> list[str] | None:
    with _admin(system, db) as conn:
        return conn.execute(
            "SELECT proconfig FROM pg_proc WHERE oid = 'audit.seal(integer)'::regprocedure"
        ).fetchone()[0]


def migrate(system) -> subprocess.Popen:
    """Start `ontrack --json migrate` (the whole fleet of the session's deployment)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ontrackio.cli.main", "--json", "migrate"],
        env=system.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc


def jobs_of(out: str, slugs: list[str]) -> dict[tuple[str, str], dict]:
    return {
        (j["tenant"], j["service"]): j for j in json.loads(out)["tenants"] if j["tenant"] in slugs
    }


def test_a_fleet_migration_killed_for_one_tenant_is_reported_and_finished_by_a_rerun(
    system, channels, settings
):
    """Three tenants each one migration behind; while `ontrack migrate` applies it, the
    connection migrating one tenant's inventory database is killed mid-migration. The run
    goes on, reports that job failed (exit 1) and the others migrated; that database keeps
    its recorded version (the migration rolled back whole); running the command again
    applies it there and finds every other database current."""
    slugs = sorted(unique("fm") for _ in range(3))
    for slug in slugs:
        create_tenant(channels, slug)
    dbs = {
        (s, svc): Names(settings.deployment, svc).tenant_database(s)
        for s in slugs
        for svc in SERVICES
    }
    for db in dbs.values():
        make_0003_pending(system, db)
    victim = dbs[(slugs[1], "inventory")]

    # Hold the function the migration alters, so the job for the victim blocks inside its
    # migration's transaction, where the test kills its connection.
    blocker = _admin(system, victim)
    blocker.execute("BEGIN")
    blocker.execute("ALTER FUNCTION audit.seal(integer) SET work_mem = '1MB'")
    blocker_pid = blocker.info.backend_pid
    try:
        proc = migrate(system)

        def blocked_migrator() -> int | None:
            with psycopg.connect(system.pg_dsn, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s"
                    " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
                    " AND query LIKE '%%ALTER FUNCTION audit.seal%%'",
                    (victim, blocker_pid),
                ).fetchone()
            return row and row[0]

        pid = eventually(blocked_migrator, timeout=60)
        with psycopg.connect(system.pg_dsn, autocommit=True) as conn:
            assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        out, err = proc.communicate(timeout=120)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert proc.returncode == 1, err
    first = jobs_of(out, slugs)
    assert len(first) == len(dbs)
    failed = first[(slugs[1], "inventory")]
    assert failed["status"] == "failed" and failed["applied"] == [], failed
    assert "terminat" in failed["error"], failed
    for key, job in first.items():
        if key != (slugs[1], "inventory"):
            assert (job["status"], job["applied"]) == ("migrated", [CORE_0003]), job
    assert seal_config(system, victim) is None  # rolled back whole: nothing half done
    with _admin(system, victim) as conn:
        assert not conn.execute(
            "SELECT 1 FROM schema_migrations WHERE component = 'core' AND version = 3"
        ).fetchone()

    proc = migrate(system)
    out, err = proc.communicate(timeout=120)
    second = jobs_of(out, slugs)
    assert second[(slugs[1], "inventory")]["status"] == "migrated", second
    assert second[(slugs[1], "inventory")]["applied"] == [CORE_0003]
    assert {j["status"] for k, j in second.items() if k != (slugs[1], "inventory")} == {"current"}
    assert seal_config(system, victim) == ["search_path=pg_catalog, pg_temp"]
    for db in dbs.values():
        assert seal_config(system, db) == ["search_path=pg_catalog, pg_temp"]
