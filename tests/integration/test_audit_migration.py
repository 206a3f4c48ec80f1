"""Moving the old audit tables into the trail: identity's access_audit (tenant databases)
and the control database's audit_log, in their order, into chains that verify."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from ontrackio.core.audit import log as audit_log
from ontrackio.core.audit import verify
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.runtime import service_dir
from ontrackio.identity.control import control_migrations
from tests.conftest import unique
from tests.integration.test_audit_trail import seal_all


def _before(migrations: list[mig.Migration], component: str, version: int):
    return [m for m in migrations if not (m.component == component and m.version >= version)]


@pytest.fixture()
def provisioner(settings):
    made = []

    def make(migrations):
        p = Provisioner(
            "identity",
            Clusters(settings),
            migrations,
            settings.deployment,
            settings.tenant_role_secret.get_secret_value(),
            use_template=False,
        )
        made.append(p)
        return p

    yield make


def test_access_audit_rows_move_into_the_trail_in_order(settings, provisioner):
    full = mig.for_service(service_dir("identity"))
    slug = unique("am")
    old = provisioner(_before(full, "identity", 3))
    done = old.provision(slug, "main")
    conninfo = Clusters(settings).tenant_conninfo("identity", slug, "main")
    token = "token:" + "cd" * 12
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for i, actor in enumerate([token, "cli:dave", "system", token]):
                conn.execute(
                    "INSERT INTO access_audit (at, actor, action, address, old_value, new_value)"
                    " VALUES (now() - make_interval(mins => %s), %s, 'allowlist.set', %s,"
                    " '{\"cidrs\": []}', jsonb_build_object('cidrs', jsonb_build_array(%s::text)))",
                    (10 - i, actor, f"192.0.2.{i}", f"10.{i}.0.0/16"),
                )
        upto_trail = _before(full, "identity", 4)
        assert provisioner(upto_trail).migrate_tenant(slug, "main") == ["identity:0003_audit_trail"]
        with psycopg.connect(conninfo, autocommit=True) as conn:
            gone = conn.execute("SELECT to_regclass('access_audit')").fetchone()[0]
            seal_all(conn)
            rows = conn.execute(
                "SELECT s.seq, e.actor, e.client_address, e.new_value, e.at FROM audit.seals s"
                " JOIN audit.entries e ON e.id = s.entry_id ORDER BY s.seq"
            ).fetchall()
            listed = audit_log.list_entries(conn, audit_log.Filters(), 10, None)
            result = verify.verify(conn, done.database, None)
        assert gone is None and result.ok and result.sealed == 4
        assert [r[2] for r in rows] == [f"192.0.2.{i}" for i in range(4)]
        assert [r[4] for r in rows] == sorted(r[4] for r in rows)
        assert rows[0][1] == token and rows[2][1] == "system"
        assert rows[1][1].startswith("pv:")  # a login name is personal
        assert listed[2]["actor_value"] == "cli:dave"
        assert listed[0]["new_value"] == {"cidrs": ["10.3.0.0/16"]}
    finally:
        old.drop(slug, "main")


def test_control_audit_log_moves_into_the_control_trail(settings, provisioner):
    full = control_migrations()
    p = provisioner(_before(full, "control", 2))
    clusters = Clusters(settings)
    db = f"{settings.deployment}_identity__ctlmig{uuid.uuid4().hex[:6]}"
    role = db
    try:
        p.ensure_database("main", db, role, _before(full, "control", 2))
        tenant_id = uuid.uuid4()
        with clusters.admin_connect("main", db) as conn:
            conn.execute(
                "INSERT INTO tenants (id, slug, name, tier, status, region, placement)"
                " VALUES (%s, 'acme', 'Acme', 'business', 'active', 'eu', 'main')",
                (tenant_id,),
            )
            for action in ("tenant.create", "tenant.activate", "tenant.suspend"):
                conn.execute(
                    "INSERT INTO audit_log (tenant_id, actor, action, new_value)"
                    " VALUES (%s, 'system', %s, '{\"status\": \"x\"}')",
                    (tenant_id, action),
                )
        upto = _before(full, "control", 3)
        assert p.ensure_database("main", db, role, upto) == ["control:0002_audit_trail"]
        with psycopg.connect(clusters.role_conninfo("main", db, role), autocommit=True) as conn:
            seal_all(conn)
            actions = conn.execute(
                "SELECT e.action, e.target FROM audit.seals s JOIN audit.entries e"
                " ON e.id = s.entry_id ORDER BY s.seq"
            ).fetchall()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM audit.anchors")
            assert verify.verify(conn, db, None).ok
        assert actions == [
            (a, f"tenant:{tenant_id}")
            for a in ("tenant.create", "tenant.activate", "tenant.suspend")
        ]
    finally:
        with clusters.admin_connect("main") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
