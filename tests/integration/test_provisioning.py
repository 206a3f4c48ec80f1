"""Provisioning against the real PostgreSQL: template clones, ownership, isolation by
privileges (the server trusts every password, so only CONNECT rights keep tenants apart),
privileges re-applied after a crash, role passwords sent only as SCRAM verifiers."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import sql

from ontrackio.core.db import migrations as mig
from ontrackio.core.db import scram
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner, PublicAccess, public_can_connect
from ontrackio.core.runtime import service_dir
from ontrackio.core.tenancy import role_password
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


# -- privileges after a crash --------------------------------------------------------------


def public_connect(settings, db: str) -> bool:
    with admin(settings) as conn:
        return public_can_connect(conn, db)


def test_a_retry_after_a_crash_before_revoke_takes_connect_from_public(settings, prov):
    """The crash: the role and the clone exist, the privileges were never applied."""
    slug = unique("c")
    db, role = prov.names.tenant_database(slug), prov.names.tenant_role(slug)
    with admin(settings) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(db), sql.Identifier(prov.names.template_database)
            )
        )
    assert public_connect(settings, db) is True  # what the crash leaves
    done = prov.provision(slug, "main")
    assert done.created is False
    assert public_connect(settings, db) is False
    with admin(settings) as conn:
        owner, temp = conn.execute(
            "SELECT pg_get_userbyid(datdba), has_database_privilege('public', datname, 'TEMP')"
            " FROM pg_database WHERE datname = %s",
            (db,),
        ).fetchone()
        verifier = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
        ).fetchone()[0]
    assert (owner, temp) == (role, False)
    secret = settings.tenant_role_secret.get_secret_value()  # the configured one
    assert scram.verifier_matches(verifier, role_password(secret, role))
    # The clone's tables were handed to the tenant role on the retry too.
    with psycopg.connect(Clusters(settings).role_conninfo("main", db, role)) as conn:
        owners = {
            r[0]
            for r in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")
        }
    assert owners == {role}


def test_a_template_created_before_a_crash_is_closed_on_the_next_start(settings):
    p = Provisioner(
        f"x{unique()[1:7]}",
        Clusters(settings),
        [],
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
    )
    tmpl = p.names.template_database
    with admin(settings) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(tmpl)))
    assert public_connect(settings, tmpl) is True
    p.ensure_template("main")
    assert public_connect(settings, tmpl) is False


@pytest.fixture
def foreign_public_grant(settings, prov):
    """A tenant database that PUBLIC may connect to by the grant of another role, which the
    owner's REVOKE does not reach."""
    slug = unique("f")
    prov.provision(slug, "main")
    db = prov.names.tenant_database(slug)
    other = f"{settings.deployment}_grantor_{slug}"
    with admin(settings) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(other)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {} WITH GRANT OPTION").format(
                sql.Identifier(db), sql.Identifier(other)
            )
        )
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(other)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO PUBLIC").format(sql.Identifier(db)))
        conn.execute("RESET ROLE")
    yield slug, db
    with admin(settings) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(other)))


def test_no_tenant_is_ready_on_a_database_public_can_still_open(
    settings, prov, foreign_public_grant
):
    slug, db = foreign_public_grant
    with pytest.raises(PublicAccess, match="PUBLIC can still connect"):
        prov.provision(slug, "main")
    assert public_connect(settings, db) is True


# -- role passwords ----------------------------------------------------------------------------


class Recording(Clusters):
    """The real clusters, recording every statement sent on an admin connection."""

    def __init__(self, settings):
        super().__init__(settings)
        self.sent: list[str] = []
        sent = self.sent

        class Cursor(psycopg.Cursor):
            def execute(self, query, params=None, **kw):
                text = (
                    query.as_string(self.connection)
                    if isinstance(query, sql.Composable)
                    else str(query)
                )
                sent.append(f"{text} {params!r}")
                return super().execute(query, params, **kw)

        self._cursor = Cursor

    def admin_connect(self, placement, dbname=None, **kw):
        return super().admin_connect(placement, dbname, cursor_factory=self._cursor, **kw)


def recording_provisioner(settings, secret: str) -> tuple[Provisioner, Recording]:
    clusters = Recording(settings)
    p = Provisioner(
        "privacy",
        clusters,
        mig.for_service(service_dir("privacy")),
        settings.deployment,
        secret,
    )
    return p, clusters


def stored_verifier(settings, role: str) -> str:
    with admin(settings) as conn:
        return conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
        ).fetchone()[0]


def test_role_passwords_travel_only_as_scram_verifiers_and_rotate(settings, prov):
    secret = settings.tenant_role_secret.get_secret_value()
    slug = unique("p")
    role = prov.names.tenant_role(slug)
    password = role_password(secret, role)

    first, clusters = recording_provisioner(settings, secret)
    first.provision(slug, "main")
    creates = [s for s in clusters.sent if s.startswith("CREATE ROLE")]
    assert len(creates) == 1 and "SCRAM-SHA-256$" in creates[0]
    assert not any(password in s for s in clusters.sent)
    assert stored_verifier(settings, role).startswith("SCRAM-SHA-256$")
    assert scram.verifier_matches(stored_verifier(settings, role), password)

    again, clusters = recording_provisioner(settings, secret)
    again.provision(slug, "main")
    assert not [
        s for s in clusters.sent if s.startswith(("CREATE ROLE", "ALTER ROLE")) and "PASSWORD" in s
    ]
    assert any("FROM pg_roles" in s for s in clusters.sent)  # looked up, not re-created

    rotated_secret = secret + "-rotated"
    rotated, clusters = recording_provisioner(settings, rotated_secret)
    rotated.provision(slug, "main")
    new_password = role_password(rotated_secret, role)
    alters = [s for s in clusters.sent if s.startswith("ALTER ROLE") and "PASSWORD" in s]
    assert len(alters) == 1 and "SCRAM-SHA-256$" in alters[0]
    assert not [s for s in clusters.sent if s.startswith("CREATE ROLE")]
    assert not any(new_password in s or password in s for s in clusters.sent)
    verifier = stored_verifier(settings, role)
    assert scram.verifier_matches(verifier, new_password)
    assert not scram.verifier_matches(verifier, password)
    prov.provision(slug, "main")  # back to the session's secret, for the roles' later users


def test_verifier_matches_agrees_with_the_servers_own_verifiers(settings):
    role = f"{settings.deployment}_scram_{unique()}"
    with admin(settings) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(
            sql.SQL("CREATE ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal("correct horse")
            )
        )
        verifier = stored_verifier(settings, role)
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert scram.verifier_matches(verifier, "correct horse")
    assert not scram.verifier_matches(verifier, "correct horsE")


def test_concurrent_starts_secure_one_database_without_conflicts(settings):
    """The identity api and worker both ensure the control database as they start."""
    p = Provisioner(
        "concurrent",
        Clusters(settings),
        [],
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
    )
    db = role = p.names.tenant_database(unique())
    errors: list[BaseException] = []

    def start():
        try:
            for _ in range(5):
                p.ensure_database("main", db, role, [])
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert public_connect(settings, db) is False
