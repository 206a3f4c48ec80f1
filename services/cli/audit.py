"""`ontrack audit verify [--tenant SLUG]`: check the audit chains of the deployment.

Reads every chain with the clusters' admin connections (operators are inside the
cluster; the check is read-only) and compares it with its last anchor in the control
database. Exit 0 when every chain is intact, 1 naming each broken one (database, sequence
number, reason), 2 for an unknown tenant.
"""

from __future__ import annotations

import click
import psycopg

from ontrackio.catalogue import SERVICES


def register(cli: click.Group) -> None:
    from ontrackio.cli.main import Ctx, Failure

    @cli.group()
    def audit() -> None:
        """Check the audit trail."""

    @audit.command("verify")
    @click.option("--tenant", "slug", default=None, help="Only this tenant's databases.")
    @click.pass_obj
    def audit_verify(c: Ctx, slug: str | None) -> None:
        """Recompute every audit chain and compare it with its anchor."""
        from ontrackio.core.audit import verify
        from ontrackio.core.db.clusters import Clusters
        from ontrackio.core.tenancy import validate_slug

        if slug is not None:
            try:
                validate_slug(slug)
            except ValueError as exc:
                raise Failure(str(exc), 2) from None
        s = c.settings
        try:
            results = verify.verify_deployment(
                Clusters(s),
                s.deployment,
                s.pg_control_cluster,
                slug,
                services=SERVICES,
                registry_service="identity",
            )
        except verify.UnknownTenant:
            raise Failure(f"tenant {slug!r} not found", 2) from None
        except psycopg.Error as exc:
            raise Failure(f"database error: {type(exc).__name__}".splitlines()[0]) from None
        rows = [
            {
                "database": r.database,
                "ok": r.ok,
                "entries": r.sealed,
                "unsealed": r.unsealed,
                "anchored_seq": r.anchor.seq if r.anchor else None,
                "broken_seq": r.seq,
                "reason": r.reason,
            }
            for r in results
        ]
        lines = [
            f"{'ok' if r.ok else 'BROKEN':<7} {r.database:<48} entries={r.sealed} "
            f"unsealed={r.unsealed} anchored={r.anchor.seq if r.anchor else '-'}"
            + ("" if r.ok else f"  seq {r.seq}: {r.reason}")
            for r in results
        ]
        broken = [r for r in results if not r.ok]
        c.out({"databases": rows, "broken": len(broken)}, "\n".join(lines))
        if broken:
            raise Failure("; ".join(f"{r.database} seq {r.seq}: {r.reason}" for r in broken)[:2000])
