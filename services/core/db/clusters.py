"""PostgreSQL clusters: placement of tenants, admin connections, tenant connection strings."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ontrackio.core.config import Settings
from ontrackio.core.errors import InvalidArgument
from ontrackio.core.tenancy import Names, role_password


class Clusters:
    """Knows every configured cluster and builds connection strings for it."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._dsns = {name: settings.pg_dsn(name) for name in settings.pg_clusters}

    @property
    def names(self) -> list[str]:
        return sorted(self._dsns)

    def check(self, placement: str) -> str:
        if placement not in self._dsns:
            raise InvalidArgument(
                f"unknown placement {placement!r}; known: {', '.join(self.names)}"
            )
        return placement

    def admin_conninfo(self, placement: str, dbname: str | None = None) -> str:
        """Admin DSN on `placement`, optionally on another database than the maintenance one."""
        dsn = self._dsns[self.check(placement)]
        return make_conninfo(dsn, dbname=dbname) if dbname else dsn

    def admin_connect(self, placement: str, dbname: str | None = None, **kw) -> psycopg.Connection:
        """An autocommit admin connection. Its session names the deployment in the setting
        ``ontrack.deployment`` (migrations that create deployment-wide roles read it)."""
        conninfo = self.admin_conninfo(placement, dbname)
        options = conninfo_to_dict(conninfo).get("options") or ""
        options = f"{options} -c ontrack.deployment={self._settings.deployment}".strip()
        return psycopg.connect(conninfo, autocommit=True, options=options, **kw)

    def role_conninfo(self, placement: str, dbname: str, role: str) -> str:
        """Connect as `role` (a per-tenant or control login role) to `dbname` only."""
        password = role_password(self._settings.tenant_role_secret.get_secret_value(), role)
        base = conninfo_to_dict(self._dsns[self.check(placement)])
        base.pop("password", None)
        return make_conninfo(
            make_conninfo(**base),
            dbname=dbname,
            user=role,
            password=password,
            application_name=f"ontrack-{role}"[:63],
        )

    def tenant_conninfo(self, service: str, slug: str, placement: str) -> str:
        names = Names(self._settings.deployment, service)
        return self.role_conninfo(placement, names.tenant_database(slug), names.tenant_role(slug))
