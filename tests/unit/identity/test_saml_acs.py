"""The ACS checks that need no database (``acs.verify``), against responses a real IdP signed
(pysaml2 building them, xmlsec1 signing): what is accepted and what it proves, and every
attack the issue names refused with its cause. The database's part (InResponseTo issued
and single use, unsolicited refused, replay across processes) is tested against the
running system in tests/integration/test_saml_consume.py.
"""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from lxml import etree

from ontrackio.devtools.samlidp import (
    EMAIL_ATTRIBUTE,
    ENTRA_MFA,
    GROUPS_ATTRIBUTE,
    NAME_ATTRIBUTE,
    NS,
    SamlIdP,
)
from ontrackio.identity.errors import MalformedSamlResponse, SamlResponseRefused
from ontrackio.identity.sso.saml import acs, rules
from tests.unit.identity.saml_kit import (
    REQUEST_ID,
    SP,
    assertion_of,
    config_for,
    evil_copy,
    form,
    signed,
    tree,
)

UNSPECIFIED = rules.NAMEID_UNSPECIFIED


@pytest.fixture(scope="module")
def idp():
    i = SamlIdP("https://idp.acme.test/metadata")
    yield i
    i.close()


@pytest.fixture(scope="module")
def other_idp():
    """Another tenant's IdP, claiming the same entity id (its key is not ours to trust)."""
    i = SamlIdP("https://idp.acme.test/metadata")
    yield i
    i.close()


def refused(cause: str, value: str, config) -> None:
    with pytest.raises(SamlResponseRefused) as info:
        acs.verify(value, config, SP)
    assert info.value.cause == cause


def malformed(cause: str, value: str, config) -> None:
    with pytest.raises(MalformedSamlResponse) as info:
        acs.verify(value, config, SP)
    assert info.value.cause == cause


# -- accepted -------------------------------------------------------------------------------------


def test_a_signed_assertion_proves_the_mapped_identity(idp):
    config = config_for(
        idp,
        email_attribute=EMAIL_ATTRIBUTE,
        name_attribute=NAME_ATTRIBUTE,
        groups_attribute=GROUPS_ATTRIBUTE,
    )
    value = form(
        signed(
            idp,
            name_id="00u1abcd",
            name_id_format=UNSPECIFIED,
            attributes={
                EMAIL_ATTRIBUTE: ["ann@acme.example"],
                NAME_ATTRIBUTE: ["Ann Example"],
                GROUPS_ATTRIBUTE: ["admins", "staff"],
            },
            authn_class=ENTRA_MFA,
        )
    )
    v = acs.verify(value, config, SP)
    ext = v.identity
    assert (ext.method, ext.issuer, ext.subject) == ("saml", idp.entity_id, "00u1abcd")
    assert (ext.email, ext.display_name) == ("ann@acme.example", "Ann Example")
    assert ext.mfa_evidence == (ENTRA_MFA,)
    assert ext.attributes["groups"] == "admins,staff"
    assert v.in_response_to == REQUEST_ID
    assert v.assertion_id == assertion_of(tree(acs.base64.b64decode(value).decode())).get("ID")
    now = dt.datetime.now(dt.UTC)
    # remembered at least as long as python3-saml would accept it (5 min + clock drift)
    assert now + dt.timedelta(minutes=9) < v.expires_at <= now + dt.timedelta(minutes=11)


def test_the_email_is_the_name_id_only_when_its_format_is_email(idp):
    config = config_for(idp)  # no email attribute mapped
    as_email = acs.verify(form(signed(idp, name_id="bob@acme.example")), config, SP)
    assert as_email.identity.email == "bob@acme.example"
    opaque = acs.verify(
        form(signed(idp, name_id="bob@acme.example", name_id_format=UNSPECIFIED)), config, SP
    )
    assert opaque.identity.email == ""


def test_a_signed_response_around_the_signed_assertion_is_accepted(idp):
    v = acs.verify(form(signed(idp, sign_response=True)), config_for(idp), SP)
    assert v.identity.subject == "ann@acme.example"


def test_an_unsolicited_response_is_reported_as_such(idp):
    v = acs.verify(form(signed(idp, in_response_to=None)), config_for(idp), SP)
    assert v.in_response_to is None


# -- signatures -----------------------------------------------------------------------------------


def test_an_unsigned_assertion_is_refused_even_in_a_signed_response(idp):
    refused(
        "assertion_unsigned",
        form(signed(idp, sign_assertion=False, sign_response=True)),
        config_for(idp),
    )


def test_a_stripped_signature_is_refused(idp):
    root = tree(signed(idp))
    a = assertion_of(root)
    a.remove(a.find("ds:Signature", NS))
    refused("assertion_unsigned", form(root), config_for(idp))


def test_a_changed_subject_breaks_the_signature(idp):
    root = tree(signed(idp))
    assertion_of(root).find("saml:Subject/saml:NameID", NS).text = "admin@acme.example"
    refused("signature_invalid", form(root), config_for(idp))


def test_sha1_signatures_are_refused(idp):
    refused("deprecated_algorithm", form(signed(idp, algorithm="sha1")), config_for(idp))


def test_another_tenants_idp_certificate_is_refused(idp, other_idp):
    refused("signature_invalid", form(signed(other_idp)), config_for(idp))


def test_certificate_rollover_accepts_both_keys_until_one_is_removed():
    idp = SamlIdP("https://rollover.test/metadata")
    try:
        old = idp.signer
        new = idp.add_key()
        both = config_for(idp)  # both certificates configured
        assert len(both.certificates) == 2
        by_old, by_new = form(signed(idp, signer=old)), form(signed(idp, signer=new))
        assert acs.verify(by_old, both, SP).identity.subject
        assert acs.verify(by_new, both, SP).identity.subject
        only_new = config_for(idp, certificates=[new.cert_pem])
        assert acs.verify(by_new, only_new, SP).identity.subject
        refused("signature_invalid", by_old, only_new)
    finally:
        idp.close()


# -- signature wrapping (XSW) ---------------------------------------------------------------------


def _xsw_sibling_before(root):
    """XSW3: the attacker's assertion before the signed one."""
    a = assertion_of(root)
    a.addprevious(evil_copy(a))


def _xsw_sibling_after(root):
    """XSW4-like: the attacker's assertion after the signed one."""
    a = assertion_of(root)
    a.addnext(evil_copy(a))


def _xsw_wrapped_inside(root):
    """XSW4: the signed assertion moved inside the attacker's."""
    a = assertion_of(root)
    evil = evil_copy(a)
    root.replace(a, evil)
    evil.append(a)


def _xsw_in_extensions(root):
    """XSW7: the signed assertion hidden in Extensions, the attacker's in its place."""
    a = assertion_of(root)
    evil = evil_copy(a)
    ext = etree.Element(f"{{{NS['samlp']}}}Extensions")
    root.replace(a, evil)
    root.find("saml:Issuer", NS).addnext(ext)
    ext.append(a)


def _xsw_in_signature_object(root):
    """XSW8: the signed assertion in an Object of the attacker's assertion's signature."""
    a = assertion_of(root)
    evil = copy.deepcopy(a)
    evil.set("ID", "id-evil")
    evil.find("saml:Subject/saml:NameID", NS).text = "admin@acme.example"
    obj = etree.SubElement(evil.find("ds:Signature", NS), f"{{{NS['ds']}}}Object")
    obj.append(a)
    root.replace(a, evil) if a.getparent() is root else None
    root.insert(2, evil)


def _xsw_evil_takes_the_id(root):
    """The attacker's assertion carries the signed ID and the signature; the original is
    renamed out of the assertion namespace."""
    a = assertion_of(root)
    evil = copy.deepcopy(a)
    evil.find("saml:Subject/saml:NameID", NS).text = "admin@acme.example"
    a.tag = "{urn:evil}Assertion"
    a.addprevious(evil)


@pytest.mark.parametrize(
    "wrap",
    [
        _xsw_sibling_before,
        _xsw_sibling_after,
        _xsw_wrapped_inside,
        _xsw_in_extensions,
        _xsw_in_signature_object,
        _xsw_evil_takes_the_id,
    ],
)
@pytest.mark.parametrize("sign_response", [False, True])
def test_signature_wrapping_is_refused(idp, wrap, sign_response):
    root = tree(signed(idp, sign_response=sign_response))
    wrap(root)
    with pytest.raises((SamlResponseRefused, MalformedSamlResponse)) as info:
        acs.verify(form(root), config_for(idp), SP)
    assert info.value.cause in {
        "assertion_count",
        "signature_wrapping",
        "signature_invalid",
        "schema",
    }


# -- time, audience, recipient, destination, issuer ---------------------------------------------


def test_an_expired_assertion_is_refused(idp):
    now = dt.datetime.now(dt.UTC)
    value = form(
        signed(
            idp,
            not_before=now - dt.timedelta(hours=1),
            not_on_or_after=now - dt.timedelta(minutes=10),
        )
    )
    refused("expired", value, config_for(idp))


def test_a_not_yet_valid_assertion_is_refused(idp):
    now = dt.datetime.now(dt.UTC)
    value = form(
        signed(
            idp,
            not_before=now + dt.timedelta(minutes=10),
            not_on_or_after=now + dt.timedelta(minutes=20),
        )
    )
    refused("not_yet_valid", value, config_for(idp))


def test_a_confirmation_valid_for_too_long_is_refused(idp):
    """Its id would have to stay in the replay cache for as long."""
    value = form(signed(idp, not_on_or_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=3)))
    refused("lifetime", value, config_for(idp))


@pytest.mark.parametrize("audience", ["https://other.ontrack.test/auth/saml/metadata", "x"])
def test_another_audience_is_refused(idp, audience):
    refused("audience", form(signed(idp, audience=audience)), config_for(idp))


def test_a_missing_audience_is_refused(idp):
    """python3-saml accepts an assertion without AudienceRestriction; we do not."""
    root = tree(signed(idp, sign_assertion=False))
    cond = assertion_of(root).find("saml:Conditions", NS)
    for restriction in cond.findall("saml:AudienceRestriction", NS):
        cond.remove(restriction)
    # re-signed by the IdP so that only the audience is wrong
    xml = idp._sign(
        _with_template(idp, root),
        "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        assertion_of(root).get("ID"),
        idp.signer,
    )
    refused("audience", form(xml), config_for(idp))


def _with_template(idp, root) -> str:
    from ontrackio.devtools.samlidp import _add_template

    _add_template(assertion_of(root), idp.signer, "sha256")
    return etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize(
    "recipient",
    [
        "https://evil.test/auth/saml/acs",
        "https://other.ontrack.test/auth/saml/acs",
        # python3-saml only asks that our URL be *in* the recipient: these pass it
        SP.acs_url + "/more",
        SP.acs_url + "?next=/",
    ],
)
def test_another_recipient_is_refused(idp, recipient):
    refused("subject_confirmation", form(signed(idp, recipient=recipient)), config_for(idp))


@pytest.mark.parametrize(
    "destination",
    [
        "https://evil.test/auth/saml/acs",
        # python3-saml only asks that the destination start with our URL
        SP.acs_url + "/more",
    ],
)
def test_another_destination_is_refused(idp, destination):
    refused("destination", form(signed(idp, destination=destination)), config_for(idp))


def test_the_acs_url_comes_from_the_canonical_origin_only(idp):
    """A response addressed to the host an attacker could put in forwarded headers is
    refused by a tenant whose canonical origin differs."""
    other = rules.SpEndpoints.from_origin("https://evil.test")
    value = form(signed(idp, recipient=other.acs_url, destination=other.acs_url))
    refused("destination", value, config_for(idp))


def test_another_issuer_is_refused(idp):
    refused("issuer", form(signed(idp, issuer="https://evil.test/idp")), config_for(idp))


def test_an_unsigned_response_cannot_claim_a_request(idp):
    """An unsolicited assertion (no InResponseTo inside it) in a Response whose unsigned
    InResponseTo names a request of ours: python3-saml accepts it, we refuse it."""
    root = tree(signed(idp, in_response_to=None))
    root.set("InResponseTo", REQUEST_ID)
    refused("in_response_to", form(root), config_for(idp))


def test_a_response_answering_another_request_than_its_assertion_is_refused(idp):
    root = tree(signed(idp))
    root.set("InResponseTo", "ONELOGIN_other")
    refused("subject_confirmation", form(root), config_for(idp))  # python3-saml's check


# -- hostile and malformed XML ----------------------------------------------------------------


def test_a_comment_in_the_name_id_is_refused(idp):
    """The classic truncation: the IdP signed 'ann@acme.example.evil.test'; a comment
    splits it so a careless reader sees 'ann@acme.example'."""
    xml = signed(idp, name_id="ann@acme.example.evil.test")
    hostile = xml.replace("ann@acme.example.evil.test<", "ann@acme.example<!---->.evil.test<", 1)
    assert hostile != xml
    malformed("comment", form(hostile), config_for(idp))


def _doctype(xml: str, dtd: str) -> str:
    body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
    return f'<?xml version="1.0"?>\n<!DOCTYPE Response [{dtd}]>' + body


def test_xxe_is_refused(idp):
    xml = signed(idp, name_id="ann@acme.example")
    hostile = _doctype(xml, '<!ENTITY x SYSTEM "file:///etc/passwd">').replace(
        ">ann@acme.example<", ">&x;<", 1
    )
    malformed("dtd", form(hostile), config_for(idp))


def test_billion_laughs_is_refused_at_once(idp):
    lol = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9)
    )
    hostile = _doctype(signed(idp), lol).replace(">ann@acme.example<", ">&j;<", 1)
    malformed("dtd", form(hostile), config_for(idp))


def test_a_processing_instruction_is_refused(idp):
    hostile = signed(idp).replace("<ns1:Subject>", "<?evil x?><ns1:Subject>", 1)
    malformed("processing_instruction", form(hostile), config_for(idp))


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ("", "empty"),
        ("   \r\n", "empty"),
        ("not base64!", "not_base64"),
        ("PHgvPg==", "not_a_response"),  # <x/>
        ("PHgvPg", "not_base64"),  # padding missing
        (acs.base64.b64encode(b"<unclosed").decode(), "not_xml"),
        (acs.base64.b64encode("é".encode("latin-1")).decode(), "not_xml"),
        ("A" * (acs.MAX_RESPONSE_CHARS + 4), "too_large"),
        ("ü" * 8, "not_base64"),
    ],
)
def test_malformed_values_are_invalid_arguments(idp, value, cause):
    malformed(cause, value, config_for(idp))


def test_line_wrapped_base64_is_read(idp):
    value = form(signed(idp))
    wrapped = "\r\n".join(value[i : i + 76] for i in range(0, len(value), 76))
    assert acs.verify(wrapped, config_for(idp), SP).identity.subject == "ann@acme.example"


def test_a_garbage_encrypted_assertion_is_refused_not_a_crash(idp):
    root = tree(signed(idp))
    a = assertion_of(root)
    enc = etree.Element(f"{{{NS['saml']}}}EncryptedAssertion")
    etree.SubElement(enc, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData")
    root.replace(a, enc)
    with pytest.raises((SamlResponseRefused, MalformedSamlResponse)):
        acs.verify(form(root), config_for(idp), SP)


# -- python3-saml's schemas, compiled once --------------------------------------------------------


@pytest.fixture()
def compiled_once(monkeypatch):
    """compile_schemas_once installed for one test (python3-saml's stock class restored)."""
    from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

    monkeypatch.setattr(OneLogin_Saml2_XML, "_schema_class", etree.XMLSchema)
    acs.compile_schemas_once()
    acs.compile_schemas_once()  # idempotent
    hook = OneLogin_Saml2_XML._schema_class
    assert isinstance(hook, acs._CompiledSchemas)
    return hook


@pytest.mark.parametrize("cached", [False, True])
def test_a_response_outside_the_schema_is_refused_with_or_without_the_compiled_schema(
    idp, request, cached
):
    if cached:
        request.getfixturevalue("compiled_once")
    good = tree(signed(idp))
    acs.verify(form(good), config_for(idp), SP)  # compiles (and, cached, keeps) the schema
    bad = tree(signed(idp))
    etree.SubElement(bad, f"{{{NS['samlp']}}}Unknown")  # outside the schema; not signed
    refused("schema", form(bad), config_for(idp))
    acs.verify(form(good), config_for(idp), SP)


def test_the_compiled_schema_is_kept_per_file_and_per_thread(compiled_once):
    import threading
    from pathlib import Path

    from onelogin.saml2 import xml_utils

    path = Path(xml_utils.__file__).parent / "schemas" / "saml-schema-protocol-2.0.xsd"

    def compile_it():
        with path.open() as f:
            return compiled_once(etree.parse(f))

    first = compile_it()
    assert compile_it() is first
    other = []
    t = threading.Thread(target=lambda: other.append(compile_it()))
    t.start()
    t.join()
    assert other[0] is not first and isinstance(other[0], etree.XMLSchema)
