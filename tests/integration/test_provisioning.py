"""Provisioning against the real PostgreSQL: template clones, ownership, isolation by
privileges (the server trusts every password, so only CONNECT rights keep tenants apart)."""

from __future__ import annotations

import psycopg
import pytest

from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.runtime import service_dir
from tests.conftest import unique


@pytest.fixture(scope="module")
def prov(settings) -> Provisioner:
    p = Provisioner(
        "privacy",
        Clusters(settings),
        mig.for_service(service_dir("privacy")),
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
    )
    p.ensure_template("main")
    return p


def admin(settings) -> psycopg.Connection:
    return Clusters(settings).admin_connect("main")


def test_provision_clones_template_owned_by_tenant_role(settings, prov):
    slug = unique()
    done = prov.provision(slug, "main")
    assert done.created and done.applied == []  # the template was already current
    db, role = prov.names.tenant_database(slug), prov.names.tenant_role(slug)
    with admin(settings) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (db,)
        ).fetchone()[0]
        public_connect = conn.execute(
            "SELECT has_database_privilege('public', %s, 'CONNECT')", (db,)
        ).fetchone()[0]
    assert owner == role and public_connect is False
    with psycopg.connect(Clusters(settings).role_conninfo("main", db, role)) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
                (role,),
            )
        }
        conn.execute(
            "INSERT INTO data_subjects (user_id, email) VALUES (gen_random_uuid(), 'a@b.eu')"
        )
    assert {"outbox", "inbox", "data_subjects", "schema_migrations"} <= tables


def test_provision_is_idempotent(settings, prov):
    slug = unique()
    prov.provision(slug, "main")
    again = prov.provision(slug, "main")
    assert (again.created, again.applied) == (False, [])


def test_other_tenants_and_unrelated_roles_cannot_connect(settings, prov):
    a, b = unique("a"), unique("b")
    prov.provision(a, "main")
    prov.provision(b, "main")
    clusters = Clusters(settings)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(
            clusters.role_conninfo("main", prov.names.tenant_database(b), prov.names.tenant_role(a))
        )
    with admin(settings) as conn:
        may = conn.execute(
            "SELECT has_database_privilege(%s, %s, 'CONNECT')",
            (prov.names.tenant_role(a), prov.names.tenant_database(b)),
        ).fetchone()[0]
        # Nor can the template role log in at all.
        login = conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (prov.names.template_role,)
        ).fetchone()[0]
    assert may is False and login is False


def test_drop_removes_database_and_role(settings, prov):
    slug = unique()
    prov.provision(slug, "main")
    assert prov.drop(slug, "main") is True
    with admin(settings) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s",
                (prov.names.tenant_database(slug),),
            ).fetchone()[0]
            == 0
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = %s", (prov.names.tenant_role(slug),)
            ).fetchone()[0]
            == 0
        )
    assert prov.drop(slug, "main") is False  # idempotent


def test_without_template_gives_the_same_schema(settings, prov):
    slug_t, slug_e = unique("t"), unique("e")
    plain = Provisioner(
        "privacy",
        prov.clusters,
        prov.migrations,
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
        use_template=False,
    )
    prov.provision(slug_t, "main")
    done = plain.provision(slug_e, "main")
    assert len(done.applied) == len(prov.migrations)

    def schema(slug):
        with Clusters(settings).admin_connect("main", prov.names.tenant_database(slug)) as c:
            return c.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY 1, 2"
            ).fetchall()

    assert schema(slug_t) == schema(slug_e)
