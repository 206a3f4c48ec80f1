"""SamlService against the running system: the checks only the tenant's database can make,
with responses a real IdP signed (devtools/samlidp.py).

- configuration changes are audit entries (certificates as fingerprints);
- an unsolicited response is refused unless the tenant allows IdP-initiated sign-in;
- InResponseTo must name a request this tenant issued (another tenant's is unknown here)
  and is used once;
- an assertion id is used once across identity processes: the second post, to another
  identity api process, is refused as a replay (the cache is the tenant database's);
- malformed input is INVALID_ARGUMENT, refused responses PERMISSION_DENIED, each an audit
  entry with its cause.
"""

from __future__ import annotations

import json

import grpc
import pytest

from ontrackio.core.grpcclient import tenant as tenant_md
from ontrackio.devtools.samlidp import EMAIL_ATTRIBUTE, SamlIdP
from ontrackio.identity.sso.saml import rules
from ontrackio.identity.v1 import audit_pb2 as apb
from ontrackio.identity.v1 import audit_pb2_grpc as agrpc
from ontrackio.identity.v1 import saml_pb2 as pb
from ontrackio.identity.v1 import saml_pb2_grpc as sgrpc
from tests.conftest import unique
from tests.extra_api import channel as extra_channel
from tests.extra_api import extra_api
from tests.helpers import create_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def idp():
    i = SamlIdP("https://idp.integration.test/metadata")
    yield i
    i.close()


@pytest.fixture(scope="module")
def edge(system):
    """SamlService as the gateway reaches it (the browser's calls are the edge's only)."""
    ch = system.channel("identity", "gateway")
    yield sgrpc.SamlServiceStub(ch)
    ch.close()


@pytest.fixture(scope="module")
def admin(system):
    ch = system.channel("identity", "cli")
    yield sgrpc.SamlServiceStub(ch), agrpc.AuditServiceStub(ch)
    ch.close()


def md(slug: str):
    return (*tenant_md(slug), ("x-ontrack-actor", "cli:saml-test"))


def origin(slug: str) -> str:
    return f"https://{slug}.ontrack.test"


def configure(admin, slug: str, idp: SamlIdP, **kw) -> pb.SamlConfig:
    config = pb.SamlConfig(
        idp_entity_id=idp.entity_id,
        sso_url=idp.sso_url,
        certificates=[idp.signer.cert_pem],
        email_attribute=EMAIL_ATTRIBUTE,
        **kw,
    )
    return admin[0].SetSamlConfig(
        pb.SetSamlConfigRequest(config=config), metadata=md(slug), timeout=10
    )


def response(idp: SamlIdP, slug: str, in_response_to: str | None, name_id="ann@acme.example"):
    sp = rules.SpEndpoints.from_origin(origin(slug))
    return idp.encoded(
        sp_entity_id=sp.entity_id,
        acs_url=sp.acs_url,
        in_response_to=in_response_to,
        name_id=name_id,
    )


def consume(stub, slug: str, value: str, relay: str = "", binding: str = ""):
    return stub.ConsumeResponse(
        pb.ConsumeResponseRequest(
            saml_response=value,
            relay_state=relay,
            canonical_origin=origin(slug),
            client_address="203.0.113.7",
            user_agent="pytest",
            binding=binding,
        ),
        metadata=tenant_md(slug),
        timeout=15,
    )


def refusal_causes(admin, slug: str) -> list[str]:
    entries = (
        admin[1]
        .ListAudit(
            apb.ListAuditRequest(action="saml.response_refused"), metadata=md(slug), timeout=10
        )
        .entries
    )
    return [json.loads(e.new_json)["cause"] for e in entries]


@pytest.fixture(scope="module")
def tenant(channels, admin, idp):
    slug = unique("saml")
    create_tenant(channels, slug)
    configure(admin, slug, idp)
    return slug


def test_configuration_is_stored_and_audited_without_the_certificate(admin, idp, tenant):
    got = admin[0].GetSamlConfig(pb.GetSamlConfigRequest(), metadata=md(tenant), timeout=10)
    assert got.idp_entity_id == idp.entity_id
    assert list(got.certificates) == [idp.signer.cert_b64]
    assert got.requested_authn_context == [] and not got.allow_idp_initiated
    entries = (
        admin[1]
        .ListAudit(apb.ListAuditRequest(action="saml.config_set"), metadata=md(tenant), timeout=10)
        .entries
    )
    assert entries and entries[0].actor_display == "cli:saml-test"
    assert idp.signer.cert_b64 not in entries[0].new_json
    assert json.loads(entries[0].new_json)["certificates"] == list(got.certificate_fingerprints)


def test_sp_metadata_is_served_for_the_canonical_origin(edge, tenant):
    got = edge.GetSpMetadata(
        pb.GetSpMetadataRequest(canonical_origin=origin(tenant)), metadata=tenant_md(tenant)
    )
    assert got.acs_url == origin(tenant) + "/auth/saml/acs"
    assert got.acs_url in got.xml and "PRIVATE" not in got.xml
    again = edge.GetSpMetadata(
        pb.GetSpMetadataRequest(canonical_origin=origin(tenant)), metadata=tenant_md(tenant)
    )
    assert again.certificate == got.certificate  # one key pair per tenant


def test_malformed_input_is_an_invalid_argument_and_audited(edge, admin, tenant):
    with pytest.raises(grpc.RpcError) as info:
        consume(edge, tenant, "not base64!")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not_base64" in refusal_causes(admin, tenant)


def test_an_unsolicited_response_is_refused_unless_allowed(edge, admin, idp, tenant):
    with pytest.raises(grpc.RpcError) as info:
        consume(edge, tenant, response(idp, tenant, None))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "unsolicited" in refusal_causes(admin, tenant)


def test_in_response_to_must_be_a_request_this_tenant_issued(channels, edge, admin, idp, tenant):
    with pytest.raises(grpc.RpcError) as info:
        consume(edge, tenant, response(idp, tenant, "ONELOGIN_never_issued"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # a request another tenant issued (same IdP) is unknown here
    other = unique("samlo")
    create_tenant(channels, other)
    configure(admin, other, idp)
    theirs = edge.StartLogin(
        pb.StartLoginRequest(canonical_origin=origin(other), next="/"),
        metadata=tenant_md(other),
    ).request_id
    with pytest.raises(grpc.RpcError) as info:
        consume(edge, tenant, response(idp, tenant, theirs))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_causes(admin, tenant).count("unknown_request") >= 2


def test_a_request_id_and_an_assertion_are_used_once_across_processes(
    system, edge, admin, idp, tenant
):
    """The first post gets past every protocol check and is refused by sign-in (the
    tenant has not verified acme.example): that refusal is audited and the assertion and
    the request stay used. The same response again, to another identity process, is a
    replay; a new assertion for the used request is an unknown request."""
    start = edge.StartLogin(
        pb.StartLoginRequest(canonical_origin=origin(tenant), next="/assets"),
        metadata=tenant_md(tenant),
    )
    assert start.redirect_url.startswith(idp.sso_url + "?SAMLRequest=")
    value = response(idp, tenant, start.request_id)
    before = refusal_causes(admin, tenant)
    with pytest.raises(grpc.RpcError) as info:
        consume(edge, tenant, value, binding=start.binding)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_causes(admin, tenant) == before  # no protocol refusal recorded
    signin_refusals = (
        admin[1]
        .ListAudit(apb.ListAuditRequest(action="signin.refused"), metadata=md(tenant), timeout=10)
        .entries
    )
    assert [json.loads(e.new_json)["method"] for e in signin_refusals][:1] == ["saml"]
    with extra_api(system, "identity", "identity-api-saml") as api:
        with extra_channel(system, api, "gateway") as ch:
            with pytest.raises(grpc.RpcError) as info:
                consume(sgrpc.SamlServiceStub(ch), tenant, value, binding=start.binding)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_causes(admin, tenant).count("replayed") == 1
    with pytest.raises(grpc.RpcError) as info:
        consume(edge, tenant, response(idp, tenant, start.request_id), binding=start.binding)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (
        refusal_causes(admin, tenant).count("unknown_request")
        == before.count("unknown_request") + 1
    )


def test_a_response_is_accepted_only_from_the_browser_its_request_went_to(edge, admin, idp, tenant):
    """Login CSRF: a response answering a request, posted by another browser (no binding
    cookie, or another request's), is refused and uses nothing up; from the right browser
    the same response gets past every protocol check."""
    start = edge.StartLogin(
        pb.StartLoginRequest(canonical_origin=origin(tenant), next="/"),
        metadata=tenant_md(tenant),
    )
    other = edge.StartLogin(
        pb.StartLoginRequest(canonical_origin=origin(tenant), next="/"),
        metadata=tenant_md(tenant),
    )
    assert start.binding and start.binding != other.binding
    value = response(idp, tenant, start.request_id)
    for binding in ("", other.binding, start.binding[:-1] + "x"):
        with pytest.raises(grpc.RpcError) as info:
            consume(edge, tenant, value, binding=binding)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_causes(admin, tenant)[:3] == ["other_browser"] * 3
    before = refusal_causes(admin, tenant)
    with pytest.raises(grpc.RpcError) as info:  # refused by sign-in (domain), not protocol
        consume(edge, tenant, value, binding=start.binding)
    assert refusal_causes(admin, tenant) == before
