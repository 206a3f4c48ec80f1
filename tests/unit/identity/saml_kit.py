"""Shared pieces of the SAML unit tests: a real IdP (pysaml2 + xmlsec1), our SP endpoints for
a tenant, and helpers to take signed responses apart the way attackers do."""

from __future__ import annotations

import base64
import copy

from lxml import etree

from ontrackio.devtools.samlidp import NS, SamlIdP, encode
from ontrackio.identity.sso.saml import rules

ORIGIN = "https://acme.ontrack.test"
SP = rules.SpEndpoints.from_origin(ORIGIN)
REQUEST_ID = "ONELOGIN_0123456789abcdef0123456789abcdef01234567"


def config_for(idp: SamlIdP, **kw) -> rules.IdpConfig:
    fields = {
        "idp_entity_id": idp.entity_id,
        "sso_url": idp.sso_url,
        "certificates": [k.cert_pem for k in idp.keys],
    }
    fields.update(kw)
    return rules.validate_config(**fields)


def signed(idp: SamlIdP, **kw) -> str:
    """A valid response's XML for SP, answering REQUEST_ID unless told otherwise."""
    args = {"sp_entity_id": SP.entity_id, "acs_url": SP.acs_url, "in_response_to": REQUEST_ID}
    args.update(kw)
    return idp.response(**args)


def tree(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def form(root_or_xml) -> str:
    if isinstance(root_or_xml, str):
        return encode(root_or_xml)
    return base64.b64encode(etree.tostring(root_or_xml)).decode()


def assertion_of(root: etree._Element) -> etree._Element:
    return root.find("saml:Assertion", NS)


def evil_copy(assertion: etree._Element, name_id: str = "admin@acme.example") -> etree._Element:
    """The attacker's assertion: the signed one copied, its signature dropped, another
    subject named, another ID."""
    evil = copy.deepcopy(assertion)
    for sig in evil.findall("ds:Signature", NS):
        evil.remove(sig)
    evil.set("ID", "id-evil")
    evil.find("saml:Subject/saml:NameID", NS).text = name_id
    return evil
