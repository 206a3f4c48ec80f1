"""`ontrack tenant key …`: a tenant's encryption key (BYO-KMS), data key rotation and the
progress of the background jobs that follow them.

Talks to identity's KeyService (the key store) and to every service's EncryptionService
(how many values each has re-encrypted); changes are audit-logged with ``cli:<user>``.
"""

from __future__ import annotations

import time

import click

from ontrackio.core import grpcclient

WAIT_POLL_SECONDS = 0.5


def register(tenant: click.Group) -> None:
    from ontrackio.catalogue import SERVICES
    from ontrackio.cli.access import _user
    from ontrackio.cli.main import Ctx, Failure, _msg

    def keys(c: Ctx):
        from ontrackio.identity.v1 import keys_pb2_grpc

        return keys_pb2_grpc.KeyServiceStub(c.channel("identity"))

    def metadata(slug: str):
        return (*grpcclient.tenant(slug), ("x-ontrack-actor", f"cli:{_user()}"))

    def progress(c: Ctx, slug: str) -> dict:
        """The key store's view and each service's re-encryption."""
        from ontrackio.core.v1 import core_pb2, core_pb2_grpc
        from ontrackio.identity.v1 import keys_pb2 as pb

        data = _msg(c.call(keys(c).GetTenantKey, pb.GetTenantKeyRequest(), metadata=metadata(slug)))
        data["reencryption"] = [
            _msg(
                c.call(
                    core_pb2_grpc.EncryptionServiceStub(c.channel(s)).GetEncryptionStatus,
                    core_pb2.GetEncryptionStatusRequest(),
                    metadata=metadata(slug),
                )
            )
            for s in SERVICES
        ]
        return data

    def busy(data: dict) -> bool:
        return data.get("state") == "rewrapping" or any(
            r.get("reencrypting") for r in data["reencryption"]
        )

    def lines(data: dict) -> str:
        key = data.get("kek", "")
        owner = "customer-managed" if data.get("customer_managed") else "platform"
        out = [
            f"key        {key} ({owner}, {data.get('provider', '')})",
            f"data keys  {data.get('rewrapped', 0)} of {data.get('total', 0)} wrapped under it"
            f" ({data.get('state', '')})",
        ]
        versions = {s["service"]: s for s in data.get("services", [])}
        for r in data["reencryption"]:
            svc = r.get("service", "")
            current = versions.get(svc, {}).get("current_version", 0)
            counts = [
                f"{c['table']}.{c['column']}: "
                + (
                    ", ".join(f"v{v}={n}" for v, n in sorted(c.get("rows_by_version", {}).items()))
                    or "empty"
                )
                for c in r.get("columns", [])
            ]
            state = "re-encrypting" if r.get("reencrypting") else "current"
            out.append(
                f"{svc:<10} v{current} {state}" + (f"  ({'; '.join(counts)})" if counts else "")
            )
        return "\n".join(out)

    def finish(c: Ctx, slug: str, wait: bool, timeout: float) -> None:
        data = progress(c, slug)
        deadline = time.monotonic() + timeout
        while wait and busy(data):
            if time.monotonic() > deadline:
                c.out(data, lines(data))
                raise Failure(
                    f"still working after {timeout:g} s (see `ontrack tenant key show {slug}`)"
                )
            time.sleep(WAIT_POLL_SECONDS)
            data = progress(c, slug)
        c.out(data, lines(data))

    @tenant.group("key")
    def key() -> None:
        """A tenant's encryption key: show, bring your own (BYO-KMS), rotate."""

    @key.command("show")
    @click.argument("slug")
    @click.pass_obj
    def key_show(c: Ctx, slug: str) -> None:
        """The key protecting SLUG's data keys and the progress of re-wrap and re-encryption."""
        finish(c, slug, False, 0)

    def waiting(f):
        f = click.option("--wait", is_flag=True, help="Wait until the background work is done.")(f)
        return click.option("--timeout", type=float, default=600.0, show_default=True)(f)

    @key.command("set")
    @click.argument("slug")
    @click.argument("key_arn")
    @waiting
    @click.pass_obj
    def key_set(c: Ctx, slug: str, key_arn: str, wait: bool, timeout: float) -> None:
        """Protect SLUG's data with the customer's AWS KMS key KEY_ARN (Enterprise tier; the
        key is tested first), or with `platform` the platform's key again."""
        from ontrackio.identity.v1 import keys_pb2 as pb

        arn = "" if key_arn == "platform" else key_arn
        c.call(keys(c).SetTenantKey, pb.SetTenantKeyRequest(key_arn=arn), metadata=metadata(slug))
        finish(c, slug, wait, timeout)

    def background(name: str, rpc: str, request: str, doc: str) -> None:
        """`ontrack tenant key NAME SLUG [--wait]`: start KeyService.RPC, show its progress."""

        @key.command(name, help=doc)
        @click.argument("slug")
        @waiting
        @click.pass_obj
        def command(c: Ctx, slug: str, wait: bool, timeout: float) -> None:
            from ontrackio.identity.v1 import keys_pb2 as pb

            c.call(getattr(keys(c), rpc), getattr(pb, request)(), metadata=metadata(slug))
            finish(c, slug, wait, timeout)

    background(
        "rotate",
        "RotateDataKeys",
        "RotateDataKeysRequest",
        "A new data key version for every service of SLUG; older values are re-encrypted in "
        "the background (old versions stay readable meanwhile).",
    )
    background(
        "rewrap",
        "RewrapDataKeys",
        "RewrapDataKeysRequest",
        "Re-wrap SLUG's data keys under the newest version of its key (after the KMS key was "
        "rotated).",
    )
