"""`ontrack token …` and `ontrack allowlist …`: API tokens and the admin IP allowlist of a tenant.

Talks to identity's AccessService directly (operators are inside the cluster); every change
is audit-logged by identity with the actor ``cli:<user>``.
"""

from __future__ import annotations

import getpass
import re

import click

from ontrackio.core import grpcclient

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])\Z")


def parse_duration(text: str) -> int:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s`` or ``2w``; raises click.BadParameter."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise click.BadParameter(f"{text!r} is not a duration like 30d, 12h, 90m")
    return int(m.group(1)) * UNITS[m.group(2)]


def register(cli: click.Group) -> None:
    from ontrackio.cli.main import Ctx, _msg

    def stub(c: Ctx):
        from ontrackio.identity.v1 import access_pb2_grpc

        return access_pb2_grpc.AccessServiceStub(c.channel("identity"))

    def metadata(slug: str):
        return (*grpcclient.tenant(slug), ("x-ontrack-actor", f"cli:{_user()}"))

    def token_line(t: dict) -> str:
        state = "revoked" if t.get("revoked_at") else "active"
        return (
            f"{t['id']}  {state:<7} {','.join(t.get('scopes', [])):<24} "
            f"expires={t.get('expires_at', 'never')} "
            f"cidrs={','.join(t.get('cidrs', [])) or 'any'}"
            f" last_used={t.get('last_used_at', '-')} {t.get('last_used_address', '')}  "
            f"{t.get('name', '')}"
        )

    @cli.group()
    def token() -> None:
        """Create, list and revoke a tenant's API tokens."""

    @token.command("create")
    @click.option("--tenant", "slug", required=True)
    @click.option(
        "--scope",
        "scopes",
        multiple=True,
        required=True,
        type=click.Choice(["api:read", "api:write", "admin", "scim"]),
        help="Scope (repeatable).",
    )
    @click.option("--cidr", "cidrs", multiple=True, help="Allowed client CIDR (repeatable).")
    @click.option("--expires-in", default=None, help="Lifetime, e.g. 30d, 12h (default: never).")
    @click.option("--name", default="", help="What the token is for.")
    @click.pass_obj
    def token_create(c: Ctx, slug, scopes, cidrs, expires_in, name) -> None:
        """Create a token; its secret is printed once and never again."""
        from ontrackio.identity.v1 import access_pb2 as pb

        try:
            seconds = parse_duration(expires_in) if expires_in else 0
        except click.BadParameter as exc:
            raise click.UsageError(str(exc.message)) from None
        r = c.call(
            stub(c).CreateToken,
            pb.CreateTokenRequest(
                name=name, scopes=list(scopes), cidrs=list(cidrs), expires_in_seconds=seconds
            ),
            metadata=metadata(slug),
        )
        shown = {"token": _msg(r.token), "secret": r.secret}
        c.out(shown, f"{r.secret}\n(shown once; store it now)\n{token_line(_msg(r.token))}")

    @token.command("list")
    @click.option("--tenant", "slug", required=True)
    @click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
    @click.pass_obj
    def token_list(c: Ctx, slug, include_revoked) -> None:
        from ontrackio.identity.v1 import access_pb2 as pb

        r = c.call(
            stub(c).ListTokens,
            pb.ListTokensRequest(include_revoked=include_revoked),
            metadata=metadata(slug),
        )
        rows = [_msg(t) for t in r.tokens]
        c.out(rows, "\n".join(token_line(t) for t in rows) or "no tokens")

    @token.command("revoke")
    @click.option("--tenant", "slug", required=True)
    @click.argument("token_id")
    @click.pass_obj
    def token_revoke(c: Ctx, slug, token_id) -> None:
        """Revoke a token (every gateway refuses it within a second)."""
        from ontrackio.identity.v1 import access_pb2 as pb

        t = c.call(stub(c).RevokeToken, pb.RevokeTokenRequest(id=token_id), metadata=metadata(slug))
        c.out(_msg(t), token_line(_msg(t)))

    @cli.group()
    def allowlist() -> None:
        """Show or replace a tenant's admin IP allowlist (empty: no restriction)."""

    def allowlist_line(a: dict) -> str:
        return (" ".join(a.get("cidrs", [])) or "(empty: no restriction)") + (
            f"\nupdated {a['updated_at']} by {a.get('updated_by', '')}"
            if a.get("updated_at")
            else ""
        )

    @allowlist.command("show")
    @click.option("--tenant", "slug", required=True)
    @click.pass_obj
    def allowlist_show(c: Ctx, slug) -> None:
        from ontrackio.identity.v1 import access_pb2 as pb

        a = c.call(stub(c).GetAllowlist, pb.GetAllowlistRequest(), metadata=metadata(slug))
        shown = _msg(a)
        shown.setdefault("cidrs", [])
        c.out(shown, allowlist_line(shown))

    @allowlist.command("set")
    @click.option("--tenant", "slug", required=True)
    @click.option("--clear", is_flag=True, help="Remove every entry (no restriction).")
    @click.argument("cidrs", nargs=-1)
    @click.pass_obj
    def allowlist_set(c: Ctx, slug, clear, cidrs) -> None:
        """Replace the allowlist with CIDR… (invalid entries are refused, naming them)."""
        from ontrackio.identity.v1 import access_pb2 as pb

        if not cidrs and not clear:
            raise click.UsageError("give at least one CIDR, or --clear to remove the restriction")
        if cidrs and clear:
            raise click.UsageError("--clear takes no CIDRs")
        # Operators reach identity directly, never through the gateway the allowlist
        # guards, so the change cannot lock them out: confirm it.
        a = c.call(
            stub(c).SetAllowlist,
            pb.SetAllowlistRequest(cidrs=list(cidrs), confirm_lockout=True),
            metadata=metadata(slug),
        )
        shown = _msg(a)
        shown.setdefault("cidrs", [])
        c.out(shown, allowlist_line(shown))


def _user() -> str:
    try:
        return getpass.getuser()[:64]
    except (KeyError, OSError):
        return "unknown"
