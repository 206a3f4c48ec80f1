"""Properties of the SAML parsers at the edge: the ACS form value, a signed response taken
apart, the IdP configuration and IdP metadata.

- Any form value: ``acs.verify`` raises only MalformedSamlResponse or SamlResponseRefused
  (INVALID_ARGUMENT / PERMISSION_DENIED, never INTERNAL); a value that an independent
  reading of strict base64 refuses is ``not_base64`` (or ``empty``/``too_large``).
- A real signed response with one node changed (text, attribute, element dropped or
  duplicated, comment inserted): either it is still accepted, and then it proves exactly the
  identity the IdP signed (a change can only be somewhere unsigned), or it is refused with
  one of those two errors.
- The configuration: accepted values are a fixed point (validating them again gives the
  same), the SSO URL is https with a host; anything else is InvalidSamlConfig.
- Metadata: any bytes give an ImportedIdp or InvalidSamlConfig; the IdP's real metadata for
  any entity id and URL reads back as what it said.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from lxml import etree

from ontrackio.devtools.samlidp import SamlIdP
from ontrackio.identity.errors import (
    InvalidSamlConfig,
    MalformedSamlResponse,
    SamlResponseRefused,
)
from ontrackio.identity.sso.saml import acs, metadata, rules
from tests.unit.gateway.strategies import PROPERTY
from tests.unit.identity.saml_kit import SP, config_for, form, signed, tree

REFUSALS = (MalformedSamlResponse, SamlResponseRefused)
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")


@pytest.fixture(scope="module")
def idp():
    i = SamlIdP("https://idp.props.test/metadata")
    yield i
    i.close()


@pytest.fixture(scope="module")
def good(idp):
    """(a signed response's XML, the config accepting it, the identity it proves)."""
    xml = signed(idp, sign_response=True)
    config = config_for(idp)
    return xml, config, acs.verify(form(xml), config, SP).identity


def strict_base64(text: str) -> bool:
    compact = re.sub(r"[ \t\r\n]+", "", text)
    return bool(compact) and _B64.match(compact) is not None


hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \r\n"),
    st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(
        [
            "<samlp:Response/>",
            "PHNhbWxwOlJlc3BvbnNlLz4=",
            base64.b64encode(b'<Response xmlns="urn:oasis:names:tc:SAML:2.0:protocol"/>').decode(),
            base64.b64encode(
                b'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"'
                b' ID="x" Version="2.0" IssueInstant="nope"/>'
            ).decode(),
        ]
    ),
)


@PROPERTY
@given(hostile_text)
@example("=")
@example("PHgvPg==PHgvPg==")
@example("\ud800")
@example("A" * 4 + "\x00")
@example("0000=")  # found by CI: padding after a full quantum, which b64decode takes
def test_any_form_value_is_refused_precisely(idp, value):
    with pytest.raises(REFUSALS) as info:
        acs.verify(value, config_for(idp), SP)
    if not strict_base64(value):
        assert info.value.cause in {"not_base64", "empty", "too_large"}


def _nodes(root):
    return [el for el in root.iter() if isinstance(el.tag, str)]


@st.composite
def mutation(draw, xml: str):
    root = tree(xml)
    nodes = _nodes(root)
    target = draw(st.sampled_from(nodes))
    kind = draw(st.sampled_from(["text", "attr", "drop", "dup", "comment", "attr_drop"]))
    text = draw(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))
    if kind == "text":
        target.text = text
    elif kind == "attr" and target.attrib:
        name = draw(st.sampled_from(sorted(target.attrib)))
        target.set(name, text)
    elif kind == "attr_drop" and target.attrib:
        del target.attrib[draw(st.sampled_from(sorted(target.attrib)))]
    elif kind == "drop" and target.getparent() is not None:
        target.getparent().remove(target)
    elif kind == "dup" and target.getparent() is not None:
        target.addnext(copy.deepcopy(target))
    elif kind == "comment":
        target.insert(0, etree.Comment(text.replace("-", "")))
    return form(root)


@PROPERTY
@given(data=st.data())
def test_a_changed_response_proves_what_was_signed_or_is_refused(good, data):
    xml, config, identity = good
    value = data.draw(mutation(xml))
    try:
        verified = acs.verify(value, config, SP)
    except REFUSALS:
        return
    assert verified.identity == identity


uris = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}{path}",
        st.sampled_from(["https", "http", "HTTPS", "ftp", "javascript"]),
        st.sampled_from(["idp.example", "127.0.0.1", "[::1]", "", "u:p@idp.example", "a b"]),
        st.text(alphabet="/abc?#%:@ ", max_size=10),
    ),
)


@PROPERTY
@given(
    entity=uris,
    sso=uris,
    attrs=st.lists(st.text(max_size=300), min_size=3, max_size=3),
    contexts=st.lists(uris, max_size=10),
    comparison=st.sampled_from(["", "exact", "minimum", "better", "maximum", "EXACT", "x"]),
    loopback=st.booleans(),
)
def test_configuration_is_accepted_as_a_fixed_point_or_refused(
    idp, entity, sso, attrs, contexts, comparison, loopback
):
    fields = dict(
        idp_entity_id=entity,
        sso_url=sso,
        certificates=[idp.signer.cert_pem],
        email_attribute=attrs[0],
        name_attribute=attrs[1],
        groups_attribute=attrs[2],
        requested_authn_context=contexts,
        authn_context_comparison=comparison,
    )
    try:
        c = rules.validate_config(**fields, allow_loopback_http=loopback)
    except InvalidSamlConfig:
        return
    parts = urlsplit(c.sso_url)
    assert parts.hostname and parts.username is None
    assert parts.scheme == "https" or (loopback and rules.is_loopback_host(parts.hostname))
    again = rules.validate_config(
        idp_entity_id=c.idp_entity_id,
        sso_url=c.sso_url,
        certificates=list(c.certificates),
        email_attribute=c.email_attribute,
        name_attribute=c.name_attribute,
        groups_attribute=c.groups_attribute,
        requested_authn_context=list(c.requested_authn_context),
        authn_context_comparison=c.authn_context_comparison,
        allow_loopback_http=loopback,
    )
    assert again == c
    # and python3-saml takes it
    acs.onelogin_settings(c, SP, None)


@PROPERTY
@given(st.one_of(st.binary(max_size=500), st.text(max_size=500).map(str.encode)))
@example(b"<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'/>")
def test_any_metadata_bytes_are_read_or_refused(data):
    try:
        got = metadata.parse_idp_metadata(data)
    except InvalidSamlConfig:
        return
    assert got.sso_url and got.certificates


@PROPERTY
@given(
    entity=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:/._-", min_size=1, max_size=60),
    path=st.text(alphabet="abc/_-", max_size=20),
)
def test_real_metadata_reads_back_as_written(idp, entity, path):
    assume(entity.strip() == entity)
    saved = idp.entity_id, idp.sso_url
    idp.entity_id, idp.sso_url = entity, f"https://idp.example/{path}"
    try:
        xml = idp.metadata_xml().encode()
    finally:
        idp.entity_id, idp.sso_url = saved
    got = metadata.parse_idp_metadata(xml)
    assert got.idp_entity_id == entity
    assert got.sso_url == f"https://idp.example/{path}"
    assert got.certificates == (idp.signer.cert_b64,)


def test_strict_base64_oracle_agrees_with_the_library():
    """The oracle above is an independent reading; keep it honest on a few values."""
    for ok in ["", "QQ==", "QUI=", "QUJD"]:
        assert (binascii.a2b_base64(ok, strict_mode=True) is not None) and (
            strict_base64(ok) == bool(ok)
        )
    for bad in ["QQ", "Q===", "QQ==QQ==", "Q*=="]:
        assert not strict_base64(bad)
