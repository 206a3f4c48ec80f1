"""The tenant's SAML configuration (rules), IdP metadata (metadata), our SP metadata and
AuthnRequest: what is accepted, what is refused and why, against a real IdP's metadata and
python3-saml's own readers."""

from __future__ import annotations

import base64
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser

from ontrackio.devtools.samlidp import NS, SamlIdP, new_keypair
from ontrackio.identity.errors import InvalidSamlConfig, SamlMetadataUnavailable
from ontrackio.identity.signin.next_path import safe_next
from ontrackio.identity.sso.saml import acs, metadata, rules
from ontrackio.identity.sso.saml.api import login_redirect
from tests.unit.identity.saml_kit import SP, config_for


@pytest.fixture(scope="module")
def idp():
    i = SamlIdP("https://idp.config.test/metadata")
    i.add_key()
    yield i
    i.close()


# -- configuration --------------------------------------------------------------------------


def test_certificates_are_kept_as_base64_der_whatever_they_came_as(idp):
    pem, b64 = idp.keys[0].cert_pem, idp.keys[1].cert_b64
    c = config_for(idp, certificates=[pem, b64, pem])  # a repeat is dropped
    assert c.certificates == (idp.keys[0].cert_b64, b64)
    assert c.requested_authn_context == () and not c.allow_idp_initiated  # the defaults


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("idp_entity_id", "", "idp_entity_id is required"),
        ("idp_entity_id", "has space", "idp_entity_id"),
        ("sso_url", "http://idp.example/sso", "https"),
        ("sso_url", "https://user:pw@idp.example/sso", "user info"),
        ("sso_url", "javascript:alert(1)", "sso_url"),
        ("sso_url", "ftp://idp.example/sso", "https"),
        ("sso_url", "https:///nohost", "host"),
        ("certificates", [], "at least one"),
        ("certificates", ["not a certificate"], "certificate"),
        ("authn_context_comparison", "sideways", "comparison"),
        ("email_attribute", "a\x00b", "email_attribute"),
        ("requested_authn_context", ["x"] * 9, "at most 8"),
    ],
)
def test_bad_configuration_fields_are_named(idp, field, value, says):
    with pytest.raises(InvalidSamlConfig) as info:
        config_for(idp, **{field: value})
    assert says in str(info.value)


def test_too_many_certificates_are_refused(tmp_path, idp):
    certs = [new_keypair(f"c{i}", tmp_path).cert_pem for i in range(rules.MAX_CERTIFICATES + 1)]
    with pytest.raises(InvalidSamlConfig, match="at most 4"):
        config_for(idp, certificates=certs)


def test_a_weak_rsa_key_is_refused(tmp_path, idp):
    weak = new_keypair("weak", tmp_path, bits=1024)
    with pytest.raises(InvalidSamlConfig, match="2048"):
        config_for(idp, certificates=[weak.cert_pem])


def test_http_sso_urls_only_for_loopback_and_only_when_allowed(idp):
    base = {"idp_entity_id": idp.entity_id, "certificates": [idp.signer.cert_pem]}
    loop = "http://127.0.0.1:8080/sso"
    assert rules.validate_config(**base, sso_url=loop, allow_loopback_http=True).sso_url == loop
    with pytest.raises(InvalidSamlConfig):
        rules.validate_config(**base, sso_url=loop)
    with pytest.raises(InvalidSamlConfig):
        rules.validate_config(**base, sso_url="http://10.0.0.1/sso", allow_loopback_http=True)


@pytest.mark.parametrize(
    ("origin", "entity", "acs_url"),
    [
        ("https://acme.ontrack.test", "https://acme.ontrack.test/auth/saml/metadata", None),
        ("https://acme.ontrack.test:443", "https://acme.ontrack.test/auth/saml/metadata", None),
        ("http://acme.localhost:8443", "http://acme.localhost:8443/auth/saml/metadata", None),
    ],
)
def test_our_urls_come_from_the_canonical_origin(origin, entity, acs_url):
    sp = rules.SpEndpoints.from_origin(origin)
    assert sp.entity_id == entity
    assert sp.acs_url == entity.replace("/metadata", "/acs")


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "acme.test",
        "https://acme.test/",
        "https://acme.test/x",
        "ftp://a.test",
        "https://a.test:0",
        "https://a.test:99999",
        "https://ACME.test",
        "https://a b",
    ],
)
def test_a_malformed_origin_is_refused(origin):
    with pytest.raises(InvalidSamlConfig):
        rules.SpEndpoints.from_origin(origin)


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("/assets?x=1", "/assets?x=1"),
        ("", "/"),
        (None, "/"),
        ("https://evil.test/", "/"),
        ("//evil.test/", "/"),
        ("/\\evil.test", "/"),
        ("/a\\b", "/"),
        ("/a b", "/"),
        ("/\x00", "/"),
        ("relative", "/"),
    ],
)
def test_next_is_a_same_host_path_only(raw, safe):
    assert safe_next(raw) == safe


# -- metadata ------------------------------------------------------------------------------


def test_idp_metadata_gives_entity_sso_url_and_every_signing_certificate(idp):
    got = metadata.parse_idp_metadata(idp.metadata_xml().encode())
    assert got.idp_entity_id == idp.entity_id
    assert got.sso_url == idp.sso_url
    assert got.certificates == tuple(k.cert_b64 for k in idp.keys)
    # the same as python3-saml's own reader says of it
    theirs = OneLogin_Saml2_IdPMetadataParser.parse(idp.metadata_xml())["idp"]
    assert theirs["entityId"] == got.idp_entity_id
    assert tuple(theirs["x509certMulti"]["signing"]) == got.certificates


def test_an_aggregate_needs_the_entity_id(idp):
    other = SamlIdP("https://other.config.test/metadata")
    try:
        inner = [etree.fromstring(x.metadata_xml().encode()) for x in (idp, other)]
        agg = etree.Element(f"{{{NS['md']}}}EntitiesDescriptor", nsmap={"md": NS["md"]})
        agg.extend(inner)
        xml = etree.tostring(agg)
        with pytest.raises(InvalidSamlConfig, match="several"):
            metadata.parse_idp_metadata(xml)
        got = metadata.parse_idp_metadata(xml, other.entity_id)
        assert got.certificates == (other.signer.cert_b64,)
        with pytest.raises(InvalidSamlConfig, match="no IdP entity"):
            metadata.parse_idp_metadata(xml, "https://nobody.test/' or '1'='1")
    finally:
        other.close()


@pytest.mark.parametrize(
    ("xml", "says"),
    [
        (b"<x/>", "no IdP entity"),
        (b"not xml", "not acceptable XML"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "dtd"),
        (b"<x>" + b"a" * (metadata.MAX_METADATA_BYTES + 1) + b"</x>", "larger"),
    ],
)
def test_bad_metadata_is_refused(xml, says):
    with pytest.raises(InvalidSamlConfig, match=says):
        metadata.parse_idp_metadata(xml)


def test_metadata_without_a_certificate_is_refused(idp):
    with pytest.raises(InvalidSamlConfig, match="signing certificate"):
        metadata.parse_idp_metadata(idp.metadata_xml(keys=[]).encode())


def test_metadata_is_fetched_from_a_loopback_idp_only_when_allowed(idp):
    with idp.serve() as base:
        body = metadata.fetch(base + "/metadata", allow_loopback_http=True)
        assert metadata.parse_idp_metadata(body).idp_entity_id == idp.entity_id
        with pytest.raises(InvalidSamlConfig, match="https"):
            metadata.fetch(base + "/metadata")
        with pytest.raises(SamlMetadataUnavailable, match="404"):
            metadata.fetch(base + "/nothing", allow_loopback_http=True)
        with pytest.raises(SamlMetadataUnavailable, match="larger"):
            metadata.fetch(base + "/metadata", allow_loopback_http=True, max_bytes=100)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/md",
        "https://10.1.2.3/md",
        "https://169.254.169.254/latest",
        "https://[::1]/md",
        "https://[::ffff:127.0.0.1]/md",
        "https://localhost/md",
    ],
)
def test_metadata_is_never_fetched_from_a_private_address(url):
    with pytest.raises(SamlMetadataUnavailable, match="not public"):
        metadata.fetch(url)


def test_our_sp_metadata_names_the_acs_and_our_certificate(tmp_path):
    pair = new_keypair("sp", tmp_path)
    xml = metadata.sp_metadata(SP, rules.SpKeyPair(pair.cert_pem, pair.key_pem))
    root = etree.fromstring(xml.encode())
    assert root.get("entityID") == SP.entity_id
    acs_el = root.find(".//md:AssertionConsumerService", NS)
    assert (acs_el.get("Location"), acs_el.get("Binding")) == (SP.acs_url, rules.BINDING_POST)
    assert root.find(".//md:SPSSODescriptor", NS).get("WantAssertionsSigned") == "true"
    assert pair.cert_b64 in xml and "PRIVATE" not in xml


# -- the AuthnRequest ------------------------------------------------------------------------


def _authn_request(url: str) -> etree._Element:
    q = parse_qs(urlsplit(url).query)
    xml = zlib.decompress(base64.b64decode(q["SAMLRequest"][0]), -15)
    return etree.fromstring(xml), q["RelayState"][0]


def test_the_authn_request_requests_no_context_by_default(idp):
    url, request_id = login_redirect(config_for(idp), SP)
    assert url.startswith(idp.sso_url + "?")
    req, relay = _authn_request(url)
    assert req.get("ID") == request_id == relay
    assert req.get("AssertionConsumerServiceURL") == SP.acs_url
    assert req.find("saml:Issuer", NS).text == SP.entity_id
    assert req.find("samlp:RequestedAuthnContext", NS) is None


def test_the_authn_request_carries_the_tenants_requested_context(idp):
    ctx = "http://schemas.microsoft.com/claims/multipleauthn"
    url, _ = login_redirect(
        config_for(idp, requested_authn_context=[ctx], authn_context_comparison="minimum"), SP
    )
    req, _ = _authn_request(url)
    r = req.find("samlp:RequestedAuthnContext", NS)
    assert r.get("Comparison") == "minimum"
    assert [e.text for e in r.findall("saml:AuthnContextClassRef", NS)] == [ctx]


def test_the_idp_answers_our_authn_request(idp):
    """Round trip: pysaml2 parses our request; its answer passes our checks."""
    url, request_id = login_redirect(config_for(idp), SP)
    q = parse_qs(urlsplit(url).query)
    acs_url, page = idp.answer_authn_request(q["SAMLRequest"][0], q["RelayState"][0])
    assert acs_url == SP.acs_url
    value = etree.HTML(page).find(".//input[@name='SAMLResponse']").get("value")
    assert acs.verify(value, config_for(idp), SP).in_response_to == request_id
