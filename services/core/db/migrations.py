"""Numbered SQL migrations: one transaction each, recorded in a version table per database.

A database's migrations come from components applied in order: `core` (outbox, inbox) and
then the owning service's own. Files are named `NNNN_description.sql`. Objects are created
as the database's owner role (SET ROLE) so the per-tenant login role owns what it uses.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
CORE_DIR = Path(__file__).resolve().parent.parent / "migrations"

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  text        NOT NULL,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""


class MigrationError(Exception):
    """A migration set is malformed or an applied migration was changed afterwards."""


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.component}:{self.version:04d}_{self.name}"


def load(components: list[tuple[str, Path]]) -> list[Migration]:
    """Read every component's migrations, in application order."""
    found: list[Migration] = []
    for component, folder in components:
        versions: set[int] = set()
        for path in sorted(folder.glob("*.sql")):
            m = FILE_RE.match(path.name)
            if not m:
                raise MigrationError(f"{component}: bad migration file name {path.name!r}")
            version = int(m.group(1))
            if version in versions:
                raise MigrationError(f"{component}: version {version} appears twice")
            versions.add(version)
            found.append(Migration(component, version, m.group(2), path.read_text()))
        if sorted(versions) != list(range(1, len(versions) + 1)):
            raise MigrationError(f"{component}: versions must run 1, 2, 3, … without gaps")
    return found


def for_service(service_dir: Path) -> list[Migration]:
    """Migrations of a service's tenant databases: core's, then the service's own."""
    return load([("core", CORE_DIR), (service_dir.name, service_dir / "migrations")])


def applied(conn: psycopg.Connection) -> dict[tuple[str, int], str]:
    """(component, version) -> checksum of what this database has applied."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute("SELECT component, version, checksum FROM schema_migrations").fetchall()
    return {(c, v): s for c, v, s in rows}


def pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    """Migrations not yet applied; raises MigrationError if an applied one differs."""
    done = applied(conn)
    todo = []
    for m in migrations:
        checksum = done.get((m.component, m.version))
        if checksum is None:
            todo.append(m)
        elif checksum != m.checksum:
            raise MigrationError(f"{m.label} was changed after it was applied")
    return todo


def migrate(conn: psycopg.Connection, migrations: list[Migration], owner: str) -> list[str]:
    """Apply what is pending, each migration in its own transaction, as role `owner`.

    Safe to run concurrently on one database (an advisory lock serialises runners) and to
    resume after an interruption (each applied migration is recorded with its own change).
    Returns the labels applied.
    """
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection")
    todo = pending(conn, migrations)
    done: list[str] = []
    for m in todo:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('ontrack.schema_migrations'))")
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
            conn.execute(VERSION_TABLE)
            again = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE component = %s AND version = %s",
                (m.component, m.version),
            ).fetchone()
            if again:
                continue
            conn.execute(m.sql)
            conn.execute(
                "INSERT INTO schema_migrations (component, version, name, checksum)"
                " VALUES (%s, %s, %s, %s)",
                (m.component, m.version, m.name, m.checksum),
            )
        done.append(m.label)
    return done


def version_of(migrations: list[Migration], component: str) -> int:
    return max((m.version for m in migrations if m.component == component), default=0)
