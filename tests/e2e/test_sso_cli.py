"""The operator CLI for single sign-on against the running system: `ontrack sso saml set|show`
with certificates from files, `ontrack sso oidc set|show` with the client secret from
standard input (never on the command line, never printed), refusals as exit code 2, and
every change audited with the CLI's actor."""

from __future__ import annotations

import json
import subprocess

import pytest

from ontrackio.devtools.samlidp import EMAIL_ATTRIBUTE, SamlIdP
from ontrackio.identity.v1 import audit_pb2 as apb
from ontrackio.identity.v1 import audit_pb2_grpc as agrpc
from tests.conftest import unique
from tests.helpers import create_tenant, md, ontrack

pytestmark = pytest.mark.e2e

SECRET = "s3cret-" + "x" * 30


def ontrack_with_input(system, stdin: str, *args: str) -> subprocess.CompletedProcess:
    return ontrack(system, *args, input=stdin)


def audit_actions(system, slug: str) -> list[tuple[str, str]]:
    ch = system.channel("identity", "cli")
    try:
        entries = (
            agrpc.AuditServiceStub(ch)
            .ListAudit(
                apb.ListAuditRequest(),
                metadata=(*md(slug), ("x-ontrack-actor", "cli:e2e")),
                timeout=10,
            )
            .entries
        )
    finally:
        ch.close()
    return [(e.action, e.actor_display) for e in entries]


@pytest.fixture()
def tenant(channels):
    slug = unique("sc")
    create_tenant(channels, slug)
    return slug


def test_saml_set_from_certificate_files_then_show(system, tenant, tmp_path):
    idp = SamlIdP("https://idp.cli.test/metadata", sso_url="https://idp.cli.test/sso")
    try:
        rolled = idp.add_key()
        files = []
        for i, pair in enumerate(idp.keys):
            path = tmp_path / f"idp{i}.pem"
            path.write_text(pair.cert_pem)
            files += ["--cert", str(path)]
        out = ontrack(
            system,
            "sso", "saml", "set", tenant,
            "--entity-id", idp.entity_id,
            "--sso-url", idp.sso_url,
            *files,
            "--email-attribute", EMAIL_ATTRIBUTE,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        set_ = json.loads(out.stdout)
        assert set_["idp_entity_id"] == idp.entity_id and len(set_["certificates"]) == 2
        shown = json.loads(ontrack(system, "sso", "saml", "show", tenant).stdout)
        assert shown["certificate_fingerprints"] == set_["certificate_fingerprints"]
        assert rolled.cert_b64 in shown["certificates"]
        # neither metadata nor the three fields: a usage error, nothing stored
        bad = ontrack(system, "sso", "saml", "set", tenant, "--entity-id", idp.entity_id)
        assert bad.returncode == 2 and "--sso-url" in bad.stderr
    finally:
        idp.close()
    actions = audit_actions(system, tenant)
    assert ("saml.config_set", f"cli:{_user()}") in actions


def test_oidc_set_reads_the_secret_from_stdin_keeps_it_and_never_prints_it(system, tenant):
    out = ontrack_with_input(
        system,
        SECRET + "\n",
        "sso", "oidc", "set", tenant, "google",
        "--client-id", "cli-client.apps.example",
        "--client-secret-file", "-",
        "--hosted-domain", "acme.example",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout + out.stderr
    got = json.loads(out.stdout)
    assert got["has_client_secret"] is True and got["hosted_domains"] == ["acme.example"]
    assert got["redirect_path"] == "/auth/oidc/google/callback"
    # set again without a secret: the stored one is kept; --disabled turns it off
    again = ontrack(
        system,
        "sso", "oidc", "set", tenant, "google",
        "--client-id", "cli-client.apps.example",
        "--hosted-domain", "acme.example",
        "--disabled",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    kept = json.loads(again.stdout)
    assert kept["has_client_secret"] is True and not kept.get("enabled", False)
    shown = ontrack(system, "sso", "oidc", "show", tenant, "google")
    assert shown.returncode == 0 and SECRET not in shown.stdout
    assert json.loads(shown.stdout)["client_id"] == "cli-client.apps.example"
    assert ("oidc_provider.set", f"cli:{_user()}") in audit_actions(system, tenant)


def test_oidc_refusals_are_exit_code_2_with_the_reason(system, tenant):
    no_issuer = ontrack(system, "sso", "oidc", "set", tenant, "oidc", "--client-id", "c1")
    assert no_issuer.returncode == 2 and "issuer" in no_issuer.stderr
    no_domain = ontrack(system, "sso", "oidc", "set", tenant, "google", "--client-id", "c1")
    assert no_domain.returncode == 2 and "hosted_domains" in no_domain.stderr
    empty = ontrack_with_input(
        system, "\n", "sso", "oidc", "set", tenant, "entra", "--client-id", "c1",
        "--entra-tenant", "00000000-0000-0000-0000-000000000001", "--client-secret-file", "-",
    )  # fmt: skip
    assert empty.returncode == 2 and "empty" in empty.stderr
    unknown = ontrack(system, "sso", "oidc", "show", tenant, "entra")
    assert unknown.returncode != 0


def _user() -> str:
    from ontrackio.cli.access import _user as cli_user

    return cli_user()
