"""`ontrack sso saml …`: a tenant's SAML IdP configuration (show, set, or set from metadata).

Talks to identity's SamlService; every change is audit-logged with ``cli:<user>``. Our own
URLs (entity id, ACS) depend on the gateway's public origin, which the CLI does not know:
`show` prints what identity stores; `GET /admin/api/v1/sso/saml` adds our URLs.
"""

from __future__ import annotations

from pathlib import Path

import click

from ontrackio.core import grpcclient


def register(cli: click.Group) -> None:
    from ontrackio.cli.access import _user
    from ontrackio.cli.main import Ctx, Failure, _msg

    def stub(c: Ctx):
        from ontrackio.identity.v1 import saml_pb2_grpc

        return saml_pb2_grpc.SamlServiceStub(c.channel("identity"))

    def metadata(slug: str):
        return (*grpcclient.tenant(slug), ("x-ontrack-actor", f"cli:{_user()}"))

    def lines(d: dict) -> str:
        fps = d.get("certificate_fingerprints", [])
        out = [
            f"idp entity id     {d.get('idp_entity_id', '')}",
            f"sso url           {d.get('sso_url', '')}",
            *[f"certificate       {fp}" for fp in fps],
            f"email attribute   {d.get('email_attribute') or '(NameID when an email)'}",
            f"name attribute    {d.get('name_attribute') or '-'}",
            f"groups attribute  {d.get('groups_attribute') or '-'}",
            f"idp-initiated     {'allowed' if d.get('allow_idp_initiated') else 'refused'}",
            "authn context     "
            + (
                f"{d.get('authn_context_comparison', 'exact')}: "
                + ", ".join(d["requested_authn_context"])
                if d.get("requested_authn_context")
                else "none requested"
            ),
            f"updated           {d.get('updated_at', '')} by {d.get('updated_by', '')}",
        ]
        return "\n".join(out)

    @cli.group("sso")
    def sso() -> None:
        """Single sign-on of a tenant."""

    @sso.group("saml")
    def saml() -> None:
        """SAML 2.0: the tenant's IdP (Okta, Entra ID, any SAML IdP)."""

    @saml.command("show")
    @click.argument("slug")
    @click.pass_obj
    def saml_show(c: Ctx, slug: str) -> None:
        """SLUG's SAML IdP configuration."""
        from ontrackio.identity.v1 import saml_pb2 as pb

        r = c.call(stub(c).GetSamlConfig, pb.GetSamlConfigRequest(), metadata=metadata(slug))
        data = _msg(r)
        c.out(data, lines(data))

    @saml.command("set")
    @click.argument("slug")
    @click.option("--metadata-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--metadata-url", help="The IdP's metadata URL (https), fetched by identity.")
    @click.option("--entity-id", help="The IdP's entity id (or the one to pick from metadata).")
    @click.option("--sso-url", help="The IdP's SSO URL (HTTP-Redirect binding).")
    @click.option(
        "--cert",
        "certs",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A signing certificate (PEM file); repeat for a rollover: each is trusted.",
    )
    @click.option("--email-attribute", default="", help="Attribute holding the email.")
    @click.option("--name-attribute", default="", help="Attribute holding the display name.")
    @click.option("--groups-attribute", default="", help="Attribute holding the groups.")
    @click.option(
        "--idp-initiated/--no-idp-initiated",
        default=False,
        help="Accept unsolicited (IdP-initiated) responses (default: refused).",
    )
    @click.option(
        "--authn-context",
        "contexts",
        multiple=True,
        help="AuthnContextClassRef to request (repeatable; default: none requested).",
    )
    @click.option(
        "--comparison", type=click.Choice(["exact", "minimum", "better", "maximum"]), default=None
    )
    @click.pass_obj
    def saml_set(
        c: Ctx,
        slug: str,
        metadata_file: Path | None,
        metadata_url: str | None,
        entity_id: str | None,
        sso_url: str | None,
        certs: tuple[Path, ...],
        email_attribute: str,
        name_attribute: str,
        groups_attribute: str,
        idp_initiated: bool,
        contexts: tuple[str, ...],
        comparison: str | None,
    ) -> None:
        """Configure SLUG's IdP: from its metadata (--metadata-file or --metadata-url), or
        field by field (--entity-id, --sso-url, --cert …). Replaces the configuration."""
        from ontrackio.identity.v1 import saml_pb2 as pb

        settings = pb.SamlConfig(
            email_attribute=email_attribute,
            name_attribute=name_attribute,
            groups_attribute=groups_attribute,
            allow_idp_initiated=idp_initiated,
            requested_authn_context=list(contexts),
            authn_context_comparison=comparison or "",
        )
        if metadata_file is not None and metadata_url:
            raise Failure("give --metadata-file or --metadata-url, not both", 2)
        if metadata_file is not None or metadata_url:
            if sso_url or certs:
                raise Failure("--sso-url and --cert come from the metadata", 2)
            request = pb.ImportSamlMetadataRequest(entity_id=entity_id or "", settings=settings)
            if metadata_file is not None:
                request.xml = metadata_file.read_text()
            else:
                request.url = metadata_url or ""
            r = c.call(stub(c).ImportSamlMetadata, request, metadata=metadata(slug))
        else:
            if not (entity_id and sso_url and certs):
                raise Failure(
                    "give --metadata-file/--metadata-url, or --entity-id, --sso-url and --cert", 2
                )
            settings.idp_entity_id = entity_id
            settings.sso_url = sso_url
            settings.certificates.extend(p.read_text() for p in certs)
            r = c.call(
                stub(c).SetSamlConfig,
                pb.SetSamlConfigRequest(config=settings),
                metadata=metadata(slug),
            )
        data = _msg(r)
        c.out(data, lines(data))
