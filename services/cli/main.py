"""`ontrack`: the operator's command line. `--json` prints machine-readable output.

Exit codes: 0 success, 2 bad input (the message says what is wrong), 1 anything else.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click
import grpc
from google.protobuf import json_format

from ontrackio.core import config, grpcclient, residency
from ontrackio.core.vocabulary import TIERS

BAD_INPUT = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}


class Failure(click.ClickException):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.exit_code = code


class Ctx:
    def __init__(self, as_json: bool):
        self.as_json = as_json
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            try:
                settings = config.load()
                residency.check(settings, os.environ)  # as every process at start
            except config.ConfigError as exc:
                raise Failure(f"configuration error: {exc}", 2) from None
            self._settings = settings
        return self._settings

    def channel(self, service: str):
        """A channel to `service` presenting the CLI's certificate (identity ``cli``)."""
        try:
            return grpcclient.channel(self.settings, service, "cli")
        except config.ConfigError as exc:
            raise Failure(f"configuration error: {exc}", 2) from None

    def stub(self, service: str, stub_name: str):
        module = __import__(f"ontrackio.{service}.v1.{service}_pb2_grpc", fromlist=["x"])
        chan = self.channel(service)
        return getattr(module, stub_name)(chan)

    def call(self, fn, request, **kw):
        try:
            return fn(request, **kw)
        except grpc.RpcError as exc:
            code = exc.code()
            if code in BAD_INPUT:
                raise Failure(exc.details() or code.name, 2) from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Failure(
                    f"service unavailable ({code.name}); is the system running?"
                ) from None
            raise Failure(f"{code.name}: {exc.details()}") from None

    def out(self, data: Any, human: str) -> None:
        click.echo(json.dumps(data, indent=2, default=str) if self.as_json else human)


def _msg(m) -> dict:
    return json_format.MessageToDict(m, preserving_proto_field_name=True)


@click.group()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """Operate the OnTrackio platform."""
    ctx.obj = Ctx(as_json)


# -- tenants ------------------------------------------------------------------------------


@cli.group()
def tenant() -> None:
    """Create, inspect, suspend and delete tenants."""


def _tenant_line(t: dict) -> str:
    svc = " ".join(f"{s['service']}={s['state']}" for s in t.get("services", []))
    status = t.get("status", "").replace("TENANT_STATUS_", "").lower()
    tier = t.get("tier", "").replace("TIER_", "").lower()
    doms = ",".join(
        [*t.get("domains", []), *(f"{d}(unverified)" for d in t.get("unverified_domains", []))]
    )
    doms = doms or "-"
    return f"{t['slug']:<24} {status:<12} {tier:<10} {t.get('placement', ''):<8} {doms}  {svc}"


@tenant.command("create")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--tier", required=True, type=click.Choice(TIERS))
@click.option(
    "--domain",
    "domains",
    multiple=True,
    help="Custom domain (repeatable); routes once verified: `tenant domain verify`.",
)
@click.option("--placement", default="", help="PostgreSQL cluster (default: configured).")
@click.option("--wait", is_flag=True, help="Wait until the tenant is active.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to --wait.")
@click.option(
    "--owner",
    default="",
    help="Invite this email as the first owner once the tenant is active (implies --wait):"
    " the link is mailed and printed.",
)
@click.option(
    "--origin",
    default="",
    help="The tenant's origin for the link (default: from the gateway's settings).",
)
@click.pass_obj
def tenant_create(c: Ctx, slug, name, tier, domains, placement, wait, timeout, owner, origin):
    """Create a tenant; its databases are provisioned by every service."""
    from ontrackio.identity.v1 import identity_pb2 as pb

    stub = c.stub("identity", "TenantServiceStub")
    t = c.call(
        stub.CreateTenant,
        pb.CreateTenantRequest(
            slug=slug,
            name=name,
            tier=pb.Tier.Value(f"TIER_{tier.upper()}"),
            domains=list(domains),
            placement=placement,
        ),
    )
    if wait or owner:
        deadline = time.monotonic() + timeout
        while t.status != pb.TENANT_STATUS_ACTIVE:
            if time.monotonic() > deadline:
                raise Failure(
                    f"tenant {slug} not active after {timeout:g} s: {_tenant_line(_msg(t))}"
                )
            time.sleep(0.1)
            t = c.call(stub.GetTenant, pb.GetTenantRequest(slug=slug))
    if not owner:
        c.out(_msg(t), _tenant_line(_msg(t)))
        return
    invited = _invite_owner(c, slug, owner, origin)
    c.out(
        {**_msg(t), "owner_invitation": invited},
        f"{_tenant_line(_msg(t))}\nfirst owner {owner} invited; the link is mailed, and is:"
        f"\n  {invited['link']}\n(it works once, until {invited['expires_at']})",
    )


def _tenant_origin(slug: str, origin: str) -> str:
    if origin:
        return origin
    from ontrackio.gateway.settings import SettingsError, load_settings

    try:
        return load_settings().canonical_origin(slug)
    except SettingsError as exc:
        raise Failure(f"{exc}; or pass --origin", 2) from None


def _invite_owner(c: Ctx, slug: str, email: str, origin: str) -> dict:
    """Invite the tenant's first owner (audited as this CLI user); the link is returned to
    the CLI only, to be printed."""
    from ontrackio.identity.v1 import signin_pb2 as spb
    from ontrackio.identity.v1 import signin_pb2_grpc as sgrpc

    stub = sgrpc.SignInServiceStub(c.channel("identity"))
    r = c.call(
        stub.CreateInvitation,
        spb.CreateInvitationRequest(
            email=email, role="owner", origin=_tenant_origin(slug, origin), return_link=True
        ),
        metadata=(*grpcclient.tenant(slug), ("x-ontrack-actor", f"cli:{_cli_user()}")),
    )
    return {**_msg(r.invitation), "link": r.link}


@tenant.command("list")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted tenants.")
@click.pass_obj
def tenant_list(c: Ctx, include_deleted: bool) -> None:
    from ontrackio.identity.v1 import identity_pb2 as pb

    r = c.call(
        c.stub("identity", "TenantServiceStub").ListTenants,
        pb.ListTenantsRequest(include_deleted=include_deleted),
    )
    rows = [_msg(t) for t in r.tenants]
    c.out(rows, "\n".join(_tenant_line(t) for t in rows) or "no tenants")


HELP = {
    "show": "Show one tenant and its provisioning progress.",
    "suspend": "Suspend a tenant (its users are refused).",
    "resume": "Resume a suspended tenant.",
    "delete": "Delete a tenant: refused at once, databases dropped after the grace period.",
}


def _single(action: str, rpc: str):
    @tenant.command(action, help=HELP[action])
    @click.argument("slug")
    @click.pass_obj
    def command(c: Ctx, slug: str) -> None:
        from ontrackio.identity.v1 import identity_pb2 as pb

        t = c.call(
            getattr(c.stub("identity", "TenantServiceStub"), rpc), pb.GetTenantRequest(slug=slug)
        )
        c.out(_msg(t), _tenant_line(_msg(t)))

    return command


for _action, _rpc in [
    ("show", "GetTenant"),
    ("suspend", "SuspendTenant"),
    ("resume", "ResumeTenant"),
    ("delete", "DeleteTenant"),
]:
    _single(_action, _rpc)


@tenant.group("domain")
def tenant_domain() -> None:
    """Custom domains of a tenant (a new one routes nowhere until verified)."""


@tenant_domain.command("verify")
@click.argument("slug")
@click.argument("domain")
@click.pass_obj
def tenant_domain_verify(c: Ctx, slug: str, domain: str) -> None:
    """Mark DOMAIN of tenant SLUG verified: the gateway routes it from then on.

    Check first that the domain's owner is the tenant (the DNS check that will do this
    comes with SSO)."""
    from ontrackio.identity.v1 import identity_pb2 as pb

    t = c.call(
        c.stub("identity", "TenantServiceStub").VerifyDomain,
        pb.VerifyDomainRequest(slug=slug, domain=domain),
        metadata=(("x-ontrack-actor", f"cli:{_cli_user()}"),),
    )
    c.out(_msg(t), _tenant_line(_msg(t)))


def _cli_user() -> str:
    from ontrackio.cli.access import _user

    return _user()


# -- migrations ---------------------------------------------------------------------------


def _registry(settings, slug: str | None) -> list[tuple[str, str]]:
    """(slug, placement) of live tenants, read from the control database."""
    from ontrackio.core.db.clusters import Clusters
    from ontrackio.core.tenancy import Names, validate_slug
    from ontrackio.core.vocabulary import LIVE_STATUSES

    clusters = Clusters(settings)
    names = Names(settings.deployment, "identity")
    with clusters.admin_connect(settings.pg_control_cluster, names.control_database) as conn:
        rows = conn.execute(
            "SELECT slug, placement FROM tenants WHERE status = ANY(%s)"
            " AND (%s::text IS NULL OR slug = %s) ORDER BY slug",
            (list(LIVE_STATUSES), slug, slug),
        ).fetchall()
    if slug and not rows:
        validate_slug(slug)
        raise Failure(f"tenant {slug!r} not found", 2)
    return [(r[0], r[1]) for r in rows]


@cli.command()
@click.option("--tenant", "slug", default=None, help="Only this tenant.")
@click.option("--concurrency", type=click.IntRange(1, 32), default=None)
@click.pass_obj
def migrate(c: Ctx, slug: str | None, concurrency: int | None) -> None:
    """Migrate the control database, the templates and every tenant database.

    Also checks that PUBLIC cannot connect to any of them, repairs the privileges where it
    can (reported as repaired) and exits 1 where it could not."""
    import psycopg

    from ontrackio.catalogue import SERVICES
    from ontrackio.core.db.provisioning import Provisioner
    from ontrackio.core.errors import DomainError
    from ontrackio.core.fleet import migrate_fleet
    from ontrackio.identity.control import control_migrations

    s = c.settings
    try:
        from ontrackio.core.db.clusters import Clusters
        from ontrackio.core.db.provisioning import PublicAccess
        from ontrackio.core.fleet import JobReport
        from ontrackio.core.tenancy import Names

        names = Names(s.deployment, "identity")
        control = Provisioner(
            "identity", Clusters(s), [], s.deployment, s.tenant_role_secret.get_secret_value()
        )
        db, role = names.control_database, names.control_role
        repaired = control.repair_public_access(s.pg_control_cluster, db, role)
        applied = control.ensure_database(s.pg_control_cluster, db, role, control_migrations())
        reports = []
        if applied or repaired:
            status = "migrated" if applied else "current"
            reports.append(JobReport("(control)", "identity", status, applied, repaired))
        reports += migrate_fleet(s, _registry(s, slug), services=SERVICES, concurrency=concurrency)
    except PublicAccess as exc:  # not the operator's input: the server needs a hand
        raise Failure(str(exc)) from None
    except DomainError as exc:
        raise Failure(str(exc), 2) from None
    except psycopg.Error as exc:
        raise Failure(f"database error: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    failed = [r for r in reports if r.status == "failed"]
    lines = [
        f"{r.tenant:<24} {r.service:<10} {r.status:<9} {r.seconds * 1000:7.0f} ms "
        f"{'[PUBLIC could connect: repaired] ' if r.repaired else ''}"
        f"{' '.join(r.applied) or r.error}"
        for r in reports
    ]
    summary = {k: sum(r.status == k for r in reports) for k in ("migrated", "current", "failed")}
    summary["repaired"] = sum(r.repaired for r in reports)
    c.out(
        {"summary": summary, "tenants": [r.as_dict() for r in reports]},
        "\n".join(lines + [json.dumps(summary)]),
    )
    if failed:
        raise Failure(f"{len(failed)} database(s) failed to migrate")


# -- dead-letter queue --------------------------------------------------------------------


@cli.group()
def dlq() -> None:
    """Inspect and replay events that failed too often."""


@dlq.command("list")
@click.pass_obj
def dlq_list(c: Ctx) -> None:
    from ontrackio.core import bus

    try:
        parked = bus.dlq_list(c.settings.amqp_url.get_secret_value())
    except OSError as exc:
        raise Failure(f"broker unavailable: {exc.strerror or exc}") from None
    rows = [{k: v for k, v in p.__dict__.items() if k != "delivery_tag"} for p in parked]
    c.out(
        rows,
        "\n".join(
            f"{p.event_id} {p.type:<32} {p.tenant:<20} attempts={p.attempts} "
            f"queue={p.queue} error={p.error}"
            for p in parked
        )
        or "dead-letter queue is empty",
    )


@dlq.command("replay")
@click.option("--id", "ids", multiple=True, help="Event id to replay (repeatable).")
@click.option("--all", "replay_all", is_flag=True, help="Replay every parked event.")
@click.pass_obj
def dlq_replay(c: Ctx, ids: tuple[str, ...], replay_all: bool) -> None:
    from ontrackio.core import bus

    if not ids and not replay_all:
        raise Failure("name events with --id, or pass --all", 2)
    try:
        done = bus.dlq_replay(
            c.settings.amqp_url.get_secret_value(), None if replay_all else set(ids)
        )
    except OSError as exc:
        raise Failure(f"broker unavailable: {exc.strerror or exc}") from None
    missing = set(ids) - {p.event_id for p in done}
    c.out(
        {"replayed": [p.event_id for p in done], "not_found": sorted(missing)},
        f"replayed {len(done)} event(s)"
        + (f"; not parked: {', '.join(sorted(missing))}" if missing else ""),
    )
    if missing:
        raise Failure(f"{len(missing)} event id(s) not found in the dead-letter queue", 2)


from ontrackio.cli import access as _access  # noqa: E402 - it builds on `cli` above

_access.register(cli)

from ontrackio.cli import audit as _audit  # noqa: E402 - it builds on `cli` above

_audit.register(cli)

from ontrackio.cli import keys as _keys  # noqa: E402 - it builds on `tenant` above

_keys.register(tenant)

from ontrackio.cli import sso as _sso  # noqa: E402 - it builds on `cli` above

_sso.register(cli)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(1)


if __name__ == "__main__":
    main()
