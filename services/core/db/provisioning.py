"""Create, migrate and drop a service's per-tenant databases and login roles.

Each tenant database `<deployment>_<service>_<slug>` is owned by a login role of the same
name that may CONNECT to that database only (CONNECT is revoked from PUBLIC), so a wrong
connection string still cannot read another tenant: isolation holds by privileges, even
where the server trusts every password. Ownership and privileges are re-applied on every
provisioning (a crash right after `CREATE DATABASE` would otherwise leave PUBLIC's default
CONNECT in place for good), then checked: a database PUBLIC can still connect to is
`PublicAccess`, and no tenant is reported ready on it.

Role passwords never travel as plaintext: a role is looked up first, then created or,
when its derived password changed (a new tenant role secret), altered with a SCRAM-SHA-256
verifier computed client-side (`scram`).

New databases are cloned from a migrated template (`CREATE DATABASE … TEMPLATE`), then
brought to the current version; every step is idempotent so a retried saga step finishes
what an interrupted one began.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from ontrackio.core.db import migrations as mig
from ontrackio.core.db import scram
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.errors import FailedPrecondition
from ontrackio.core.tenancy import Names, role_password

log = logging.getLogger(__name__)
Ident = sql.Identifier


def _lock_key(name: str) -> sql.Composable:
    return sql.SQL("hashtext({})").format(sql.Literal(f"ontrack.template:{name}"))


@contextmanager
def _exclusive(admin: psycopg.Connection, db: str) -> Iterator[None]:
    """Serialise the role and privilege steps for ``db`` across processes: two concurrent
    GRANTs or ALTER ROLEs on one object fail with "tuple concurrently updated"."""
    key = sql.SQL("hashtext({})").format(sql.Literal(f"ontrack.database:{db}"))
    admin.execute(sql.SQL("SELECT pg_advisory_lock({})").format(key))
    try:
        yield
    finally:
        admin.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(key))


class PublicAccess(FailedPrecondition):
    """PUBLIC can still CONNECT to a database after its privileges were re-applied (e.g. a
    grant to PUBLIC made by another grantor, which only that grantor can revoke)."""


def public_can_connect(conn: psycopg.Connection, db: str) -> bool:
    """Whether every role (PUBLIC) may connect to database ``db`` of ``conn``'s cluster."""
    row = conn.execute("SELECT has_database_privilege('public', %s, 'CONNECT')", (db,))
    return bool(row.fetchone()[0])


def secure_database(conn: psycopg.Connection, db: str, owner: str | None) -> None:
    """Take every privilege on ``db`` from PUBLIC; with ``owner``, make it the owner with
    CONNECT and TEMPORARY. Idempotent; run from any database of the cluster. Raises
    PublicAccess when PUBLIC can connect all the same."""
    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(Ident(db)))
    if owner is not None:
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(Ident(db), Ident(owner)))
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(Ident(db), Ident(owner))
        )
    if public_can_connect(conn, db):
        raise PublicAccess(
            f"PUBLIC can still connect to database {db} (granted by another role?);"
            " revoke it as that role"
        )


@dataclass(frozen=True)
class Provisioned:
    database: str
    created: bool
    applied: list[str]
    schema_version: int


class Provisioner:
    """Database lifecycle for one service's tenants across the configured clusters."""

    def __init__(
        self,
        service: str,
        clusters: Clusters,
        migrations: list[mig.Migration],
        deployment: str,
        role_secret: str,
        use_template: bool = True,
    ):
        self.service = service
        self.clusters = clusters
        self.migrations = migrations
        self.names = Names(deployment, service)
        self._secret = role_secret
        self.use_template = use_template
        self._templates_ready: set[str] = set()

    # -- roles ----------------------------------------------------------------------------

    def _ensure_role(self, admin: psycopg.Connection, role: str, login: bool) -> None:
        """Make ``role`` exist; a login role with its current derived password.

        Never re-creates a role and never sends a password: only a SCRAM-SHA-256 verifier,
        and only when the stored one does not match (new role, or a rotated secret)."""
        found = admin.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        if found is None:
            try:
                admin.execute(
                    sql.SQL("CREATE ROLE {} {}").format(
                        Ident(role), self._login_options(admin, role)
                    )
                    if login
                    else sql.SQL("CREATE ROLE {} NOLOGIN").format(Ident(role))
                )
                return
            except (errors.DuplicateObject, errors.UniqueViolation):
                found = (None,)  # created concurrently: check it as an existing role
        if login and not (found[0] and self._password_current(admin, role)):
            admin.execute(
                sql.SQL("ALTER ROLE {} {}").format(Ident(role), self._login_options(admin, role))
            )

    def _login_options(self, admin: psycopg.Connection, role: str) -> sql.Composable:
        password = role_password(self._secret, role)
        verifier = admin.pgconn.encrypt_password(
            password.encode(), role.encode(), b"scram-sha-256"
        ).decode()
        return sql.SQL("LOGIN PASSWORD {}").format(sql.Literal(verifier))

    def _password_current(self, admin: psycopg.Connection, role: str) -> bool:
        """Whether the stored verifier matches the derived password (False when the admin
        may not read pg_authid: then the password is set again, which is harmless)."""
        try:
            row = admin.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
            ).fetchone()
        except errors.InsufficientPrivilege:
            return False
        return row is not None and scram.verifier_matches(row[0], role_password(self._secret, role))

    def _grant_self(self, admin: psycopg.Connection, role: str) -> None:
        """Let the admin SET ROLE to `role` (needed where the admin is not a superuser)."""
        is_super = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not is_super.fetchone()[0]:
            admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(Ident(role)))

    def _create_database(
        self, admin: psycopg.Connection, db: str, owner: str, template: str | None
    ) -> bool:
        stmt = sql.SQL("CREATE DATABASE {} OWNER {}").format(Ident(db), Ident(owner))
        if template:
            stmt = stmt + sql.SQL(" TEMPLATE {}").format(Ident(template))
        try:
            admin.execute(stmt)
        except errors.DuplicateDatabase:
            return False
        return True  # privileges: secure_database, on this and on every later provisioning

    def _database_exists(self, admin: psycopg.Connection, db: str) -> bool:
        return (
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
            is not None
        )

    def _migrate(self, placement: str, db: str, owner: str) -> list[str]:
        with self.clusters.admin_connect(placement, db) as conn:
            return mig.migrate(conn, self.migrations, owner)

    # -- template -------------------------------------------------------------------------

    def ensure_template(self, placement: str) -> list[str]:
        """Create the template database if missing and migrate it to the current version.

        Holds an exclusive advisory lock so no clone copies a half-migrated template.
        """
        tmpl, owner = self.names.template_database, self.names.template_role
        with self.clusters.admin_connect(placement) as admin:
            admin.execute(sql.SQL("SELECT pg_advisory_lock({})").format(_lock_key(tmpl)))
            try:
                self._ensure_role(admin, owner, login=False)
                self._grant_self(admin, owner)
                if not self._database_exists(admin, tmpl):
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(Ident(tmpl)))
                secure_database(admin, tmpl, None)  # each time: a crash may have come between
                with self.clusters.admin_connect(placement, tmpl) as conn:
                    conn.execute(
                        sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(Ident(owner))
                    )
                    applied = mig.migrate(conn, self.migrations, owner)
                self._templates_ready.add(placement)
                return applied
            finally:
                admin.execute(sql.SQL("SELECT pg_advisory_unlock({})").format(_lock_key(tmpl)))

    # -- tenants --------------------------------------------------------------------------

    def provision(self, slug: str, placement: str) -> Provisioned:
        """Make the tenant's database exist, owned by its role, migrated. Idempotent."""
        db, role = self.names.tenant_database(slug), self.names.tenant_role(slug)
        tmpl = self.names.template_database
        if self.use_template and placement not in self._templates_ready:
            self.ensure_template(placement)
        with self.clusters.admin_connect(placement) as admin, _exclusive(admin, db):
            self._ensure_role(admin, role, login=True)
            self._grant_self(admin, role)
            admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 20").format(Ident(role)))
            created = False
            if not self._database_exists(admin, db):
                if self.use_template:
                    admin.execute(
                        sql.SQL("SELECT pg_advisory_lock_shared({})").format(_lock_key(tmpl))
                    )
                    try:
                        created = self._create_database(admin, db, role, tmpl)
                    finally:
                        admin.execute(
                            sql.SQL("SELECT pg_advisory_unlock_shared({})").format(_lock_key(tmpl))
                        )
                else:
                    created = self._create_database(admin, db, role, None)
            secure_database(admin, db, role)
        with self.clusters.admin_connect(placement, db) as conn:
            if self.use_template:
                # A clone's objects belong to the template role: hand them to the tenant
                # (each time, as a crash may have come between the clone and this).
                conn.execute(
                    sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                        Ident(self.names.template_role), Ident(role)
                    )
                )
                conn.execute(
                    sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(
                        Ident(self.names.template_role)
                    )
                )
            applied = mig.migrate(conn, self.migrations, role)
        return Provisioned(db, created, applied, mig.version_of(self.migrations, self.service))

    def ensure_database(
        self, placement: str, db: str, role: str, migrations: list[mig.Migration]
    ) -> list[str]:
        """A non-tenant database (e.g. a control database) owned by login role `role`;
        raises PublicAccess if PUBLIC can connect to it all the same."""
        with self.clusters.admin_connect(placement) as admin, _exclusive(admin, db):
            self._ensure_role(admin, role, login=True)
            self._grant_self(admin, role)
            if not self._database_exists(admin, db):
                self._create_database(admin, db, role, None)
            secure_database(admin, db, role)
        with self.clusters.admin_connect(placement, db) as conn:
            return mig.migrate(conn, migrations, role)

    def repair_public_access(self, placement: str, db: str, owner: str) -> bool:
        """Re-secure ``db`` if PUBLIC can connect to it; True when it could (repaired).

        False for a database that is fine or does not exist. Raises PublicAccess when the
        repair does not take."""
        with self.clusters.admin_connect(placement) as admin, _exclusive(admin, db):
            if not self._database_exists(admin, db) or not public_can_connect(admin, db):
                return False
            log.warning("database %s: PUBLIC could connect; repairing its privileges", db)
            self._grant_self(admin, owner)
            secure_database(admin, db, owner)
            return True

    def migrate_tenant(self, slug: str, placement: str) -> list[str]:
        return self._migrate(
            placement, self.names.tenant_database(slug), self.names.tenant_role(slug)
        )

    def drop(self, slug: str, placement: str) -> bool:
        """Drop the tenant's database and role; True if the database existed. Idempotent."""
        db, role = self.names.tenant_database(slug), self.names.tenant_role(slug)
        with self.clusters.admin_connect(placement) as admin:
            existed = self._database_exists(admin, db)
            if existed:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Ident(db)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(Ident(role)))
        return existed

    def tenant_database_inserts(self, placement: str) -> dict[str, int | None]:
        """Slugs that have a database of this service on `placement`, each with the rows
        ever inserted there (pg_stat_database.tup_inserted; None when the server keeps no
        such statistics for it, or none at all: track_counts off)."""
        prefix = f"{self.names.deployment}_{self.service}_"
        with self.clusters.admin_connect(placement) as admin:
            rows = admin.execute(
                "SELECT d.datname, CASE WHEN current_setting('track_counts')::bool"
                " THEN s.tup_inserted END"
                " FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid"
                " WHERE d.datname LIKE %s ESCAPE '\\'",
                (self.names.owned_prefix(),),
            ).fetchall()
        found = {name[len(prefix) :]: inserts for name, inserts in rows}
        return {slug: n for slug, n in sorted(found.items()) if not slug.startswith("_")}
