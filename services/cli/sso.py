"""`ontrack sso saml …` and `ontrack sso oidc …`: a tenant's SAML IdP configuration (show,
set, or set from metadata) and its OIDC providers (Google Workspace, Microsoft Entra ID, a
generic OpenID provider: show, set).

Talks to identity's SamlService and OidcService; every change is audit-logged with
``cli:<user>``. Our own URLs (entity id, ACS, redirect URI) depend on the gateway's public
origin, which the CLI does not know: `show` prints what identity stores and our paths; the
admin API (`GET /admin/api/v1/sso/saml`, `…/sso/oidc/{provider}`) adds the full URLs. An
OIDC client secret is read from a file or standard input, never from the command line
(where other users of the machine could read it), and never printed.
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

    # -- OIDC ---------------------------------------------------------------------------------

    def oidc_stub(c: Ctx):
        from ontrackio.identity.v1 import oidc_pb2_grpc

        return oidc_pb2_grpc.OidcServiceStub(c.channel("identity"))

    def oidc_lines(d: dict) -> str:
        return "\n".join(
            [
                f"provider          {d.get('provider', '')}",
                f"state             {'enabled' if d.get('enabled') else 'disabled'}",
                f"issuer            {d.get('issuer', '')}",
                f"client id         {d.get('client_id', '')}",
                f"client secret     {'stored' if d.get('has_client_secret') else 'none'}",
                f"scopes            {' '.join(d.get('scopes', [])) or 'openid email profile'}",
                f"hosted domains    {', '.join(d.get('hosted_domains', [])) or '-'}",
                f"entra tenant      {d.get('entra_tenant') or '-'}",
                f"redirect path     {d.get('redirect_path', '')}",
                f"updated           {d.get('updated_at', '')} by {d.get('updated_by', '')}",
            ]
        )

    providers = click.Choice(["google", "entra", "oidc"])

    @sso.group("oidc")
    def oidc() -> None:
        """OpenID Connect: Google Workspace, Microsoft Entra ID, or a generic provider."""

    @oidc.command("show")
    @click.argument("slug")
    @click.argument("provider", type=providers)
    @click.pass_obj
    def oidc_show(c: Ctx, slug: str, provider: str) -> None:
        """SLUG's configuration of PROVIDER (the client secret only as stored or not)."""
        from ontrackio.identity.v1 import oidc_pb2 as pb

        r = c.call(
            oidc_stub(c).GetOidcConfig,
            pb.GetOidcConfigRequest(provider=provider),
            metadata=metadata(slug),
        )
        data = _msg(r)
        c.out(data, oidc_lines(data))

    @oidc.command("set")
    @click.argument("slug")
    @click.argument("provider", type=providers)
    @click.option("--client-id", required=True, help="The client (application) id.")
    @click.option(
        "--client-secret-file",
        type=click.File("r"),
        help="A file holding the client secret ('-' for standard input); without it the"
        " stored secret is kept.",
    )
    @click.option(
        "--issuer",
        default="",
        help="The issuer URL (generic provider; google and entra have theirs).",
    )
    @click.option(
        "--scope",
        "scopes",
        multiple=True,
        help="A scope to ask for (repeatable; default: openid email profile).",
    )
    @click.option(
        "--hosted-domain",
        "hosted_domains",
        multiple=True,
        help="google: a Workspace domain whose accounts are accepted (hd; repeatable).",
    )
    @click.option(
        "--entra-tenant",
        default="",
        help="entra: the directory (tenant) id whose accounts are accepted (tid).",
    )
    @click.option("--enabled/--disabled", default=True, show_default=True)
    @click.pass_obj
    def oidc_set(
        c: Ctx,
        slug: str,
        provider: str,
        client_id: str,
        client_secret_file,
        issuer: str,
        scopes: tuple[str, ...],
        hosted_domains: tuple[str, ...],
        entra_tenant: str,
        enabled: bool,
    ) -> None:
        """Configure SLUG's PROVIDER (replaces its configuration; the secret is kept unless a
        new one is given)."""
        from ontrackio.identity.v1 import oidc_pb2 as pb

        secret = client_secret_file.read().strip() if client_secret_file is not None else ""
        if client_secret_file is not None and not secret:
            raise Failure("the client secret file is empty", 2)
        r = c.call(
            oidc_stub(c).SetOidcConfig,
            pb.SetOidcConfigRequest(
                provider=provider,
                issuer=issuer,
                client_id=client_id,
                client_secret=secret,
                scopes=list(scopes),
                hosted_domains=list(hosted_domains),
                entra_tenant=entra_tenant,
                enabled=enabled,
            ),
            metadata=metadata(slug),
        )
        data = _msg(r)
        c.out(data, oidc_lines(data))
