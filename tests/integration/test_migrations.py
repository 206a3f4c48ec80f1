"""Migrations against the real PostgreSQL: one transaction each, resumable, concurrent-safe."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ontrackio.catalogue import SERVICES
from ontrackio.core import fleet
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner, public_can_connect
from ontrackio.core.tenancy import Names
from tests.conftest import unique


@pytest.fixture
def scratch(settings, tmp_path):
    """A database owned by a fresh login role, and a migrations folder for component x."""
    slug = unique()
    prov = Provisioner(
        "scratch",
        Clusters(settings),
        [],
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
        use_template=False,
    )
    folder = tmp_path / "migrations"
    folder.mkdir()
    prov.provision(slug, "main")
    db, role = prov.names.tenant_database(slug), prov.names.tenant_role(slug)
    yield Clusters(settings), db, role, folder
    prov.drop(slug, "main")


def write(folder: Path, name: str, sql: str) -> None:
    (folder / name).write_text(sql)


def versions(conn) -> list[tuple[str, int]]:
    return conn.execute("SELECT component, version FROM schema_migrations ORDER BY 1, 2").fetchall()


def test_failed_migration_leaves_nothing_half_done_and_resumes(scratch):
    clusters, db, role, folder = scratch
    write(folder, "0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    write(
        folder,
        "0002_more.sql",
        "ALTER TABLE things ADD COLUMN note text;ALTER TABLE no_such_table ADD COLUMN x int;",
    )
    with clusters.admin_connect("main", db) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            mig.migrate(conn, mig.load([("x", folder)]), role)
        assert versions(conn) == [("x", 1)]
        cols = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'things'"
            )
        }
        assert cols == {"id"}  # 0002's first statement was rolled back with it
        write(folder, "0002_more.sql", "ALTER TABLE things ADD COLUMN note text;")
        assert mig.migrate(conn, mig.load([("x", folder)]), role) == ["x:0002_more"]
        assert mig.migrate(conn, mig.load([("x", folder)]), role) == []
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'things'"
        ).fetchone()[0]
    assert owner == role


def test_changed_migration_is_refused(scratch):
    clusters, db, role, folder = scratch
    write(folder, "0001_things.sql", "CREATE TABLE things (id int);")
    with clusters.admin_connect("main", db) as conn:
        mig.migrate(conn, mig.load([("x", folder)]), role)
        write(folder, "0001_things.sql", "CREATE TABLE things (id bigint);")
        with pytest.raises(mig.MigrationError, match="changed after it was applied"):
            mig.migrate(conn, mig.load([("x", folder)]), role)


def test_concurrent_runners_apply_each_migration_once(scratch):
    clusters, db, role, folder = scratch
    for i in range(1, 6):
        write(folder, f"{i:04d}_step.sql", f"CREATE TABLE step{i} (id int);")
    migrations = mig.load([("x", folder)])
    results, errors = [], []

    def run():
        try:
            with clusters.admin_connect("main", db) as conn:
                results.append(mig.migrate(conn, migrations, role))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(label for r in results for label in r) == [m.label for m in migrations]


def test_fleet_migration_skips_current_and_resumes(system, channels, settings, monkeypatch):
    from tests.helpers import create_tenant

    slugs = [unique("f") for _ in range(3)]
    for slug in slugs:
        create_tenant(channels, slug)
    extra = mig.Migration("fleettest", 1, "note", "ALTER TABLE outbox ADD COLUMN fleet_note text;")
    real = fleet.provisioners

    def with_extra(s, services=SERVICES):
        provs = real(s, services)
        for p in provs.values():
            p.migrations = [*p.migrations, extra]
        return provs

    first = fleet.migrate_fleet(settings, [(slugs[0], "main")], services=SERVICES, templates=False)
    assert {r.status for r in first} == {"current"}

    monkeypatch.setattr(fleet, "provisioners", with_extra)
    # "Interrupted": only the first tenant got the new migration.
    partial = fleet.migrate_fleet(
        settings, [(slugs[0], "main")], services=SERVICES, templates=False
    )
    assert {(r.status, tuple(r.applied)) for r in partial} == {
        ("migrated", ("fleettest:0001_note",))
    }
    full = fleet.migrate_fleet(
        settings, [(s, "main") for s in slugs], services=SERVICES, templates=False, concurrency=3
    )
    by_tenant = {(r.tenant, r.service): r.status for r in full}
    assert len(full) == 12
    assert all(by_tenant[(slugs[0], s)] == "current" for s in SERVICES)
    assert all(by_tenant[(t, s)] == "migrated" for t in slugs[1:] for s in SERVICES)
    assert all(r.error == "" for r in full)


def failures(out: dict) -> list[dict]:
    """Failed jobs of `ontrack migrate`, but for the templates of the cluster the test stack
    configures and nobody listens on (they always fail: the command exits 1)."""
    return [
        t for t in out["tenants"] if t["status"] == "failed" and t["tenant"] != "(template@broken)"
    ]


def _grant_public(conn, db: str) -> None:
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(db)))


def test_migrate_finds_and_repairs_databases_public_can_open(system, channels, settings):
    from tests.helpers import create_tenant, ontrack

    slug = unique("pub")
    create_tenant(channels, slug)
    inventory = Names(settings.deployment, "inventory").tenant_database(slug)
    control = Names(settings.deployment, "identity").control_database
    with Clusters(settings).admin_connect("main") as conn:
        _grant_public(conn, inventory)
        _grant_public(conn, control)
    r = ontrack(system, "migrate", "--tenant", slug)
    out = json.loads(r.stdout)
    assert failures(out) == [], r.stderr
    repaired = {(t["tenant"], t["service"]) for t in out["tenants"] if t["repaired"]}
    assert repaired == {(slug, "inventory"), ("(control)", "identity")}
    assert out["summary"]["repaired"] == 2
    with Clusters(settings).admin_connect("main") as conn:
        assert not public_can_connect(conn, inventory) and not public_can_connect(conn, control)
    again = json.loads(ontrack(system, "migrate", "--tenant", slug).stdout)
    assert again["summary"]["repaired"] == 0


def test_migrate_fails_where_public_keeps_access(system, channels, settings):
    """A grant to PUBLIC by another role: the owner's REVOKE cannot take it back."""
    from tests.helpers import create_tenant, ontrack

    slug = unique("pubx")
    create_tenant(channels, slug)
    db = Names(settings.deployment, "privacy").tenant_database(slug)
    grantor = f"{settings.deployment}_grantor_{slug}"
    with Clusters(settings).admin_connect("main") as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(grantor)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {} WITH GRANT OPTION").format(
                sql.Identifier(db), sql.Identifier(grantor)
            )
        )
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(grantor)))
        _grant_public(conn, db)
        conn.execute("RESET ROLE")
    try:
        r = ontrack(system, "migrate", "--tenant", slug)
        assert r.returncode == 1, (r.stdout, r.stderr)
        failed = failures(json.loads(r.stdout))
        assert [(t["tenant"], t["service"]) for t in failed] == [(slug, "privacy")]
        assert "PUBLIC can still connect" in failed[0]["error"]
    finally:
        with Clusters(settings).admin_connect("main") as conn:
            conn.execute(
                sql.SQL("REVOKE GRANT OPTION FOR CONNECT ON DATABASE {} FROM {} CASCADE").format(
                    sql.Identifier(db), sql.Identifier(grantor)
                )
            )
            conn.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                    sql.Identifier(db), sql.Identifier(grantor)
                )
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(grantor)))


def test_domain_verification_migration_keeps_existing_domains_routed(scratch):
    """Domains added before 0003 were verified by default and stay so; new ones are not."""
    from ontrackio.identity.control import control_migrations

    clusters, db, role, _ = scratch
    every = control_migrations()
    before = [m for m in every if (m.component, m.version) != ("control", 3)]
    assert len(before) == len(every) - 1
    with clusters.admin_connect("main", db) as conn:
        mig.migrate(conn, before, role)
        conn.execute(
            "INSERT INTO tenants (id, slug, name, tier, status, region, placement)"
            " VALUES (gen_random_uuid(), 'old', 'Old', 'business', 'active', 'eu', 'main')"
        )
        conn.execute(
            "INSERT INTO tenant_domains (domain, tenant_id)"
            " SELECT 'old.example.com', id FROM tenants WHERE slug = 'old'"
        )
        assert mig.migrate(conn, every, role) == ["control:0003_domain_verification"]
        conn.execute(
            "INSERT INTO tenant_domains (domain, tenant_id)"
            " SELECT 'new.example.com', id FROM tenants WHERE slug = 'old'"
        )
        states = dict(conn.execute("SELECT domain, verified FROM tenant_domains").fetchall())
    assert states == {"old.example.com": True, "new.example.com": False}
