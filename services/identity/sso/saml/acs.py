"""The assertion consumer: a posted SAMLResponse, checked, as the ExternalIdentity it proves.

Three layers, in order; each raises before the next sees the input:

1. ``decode``: the form value as we accept it (bounded, strict base64, XML without a DTD,
   entity declarations, comments or processing instructions, rooted at samlp:Response),
   else ``MalformedSamlResponse`` (INVALID_ARGUMENT: a 400, never a 500). Our own parse, so
   python3-saml's constructor, which parses outside ``is_valid``, only sees such documents.
2. python3-saml, strict (``rules.settings``): schema, status, one assertion, signatures
   against every configured certificate, SHA-1 refused, audience, issuer, time, destination
   and recipient (prefix and substring checks there), with the request data built from the
   canonical origin. Its refusals are ``SamlResponseRefused`` with a cause.
3. Ours, on the one signed assertion: an Audience equal to our entity id (python3-saml
   accepts none), a bearer SubjectConfirmationData whose Recipient is exactly our ACS URL
   with a NotOnOrAfter (bounded: ``MAX_LIFETIME``), a Destination, when present, exactly our
   ACS URL, and the InResponseTo taken from that signed confirmation (an unsigned
   Response's InResponseTo is the attacker's to write: it must agree or be absent).

What is left for the caller, with the database (``api``): the InResponseTo must be a request
we issued for this tenant, used once; an unsolicited response needs the tenant's consent;
the assertion id must not have been seen (``store.remember_assertion``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import re
import threading
import warnings
from dataclasses import dataclass

import xmlsec
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from ontrackio.identity.errors import InvalidSamlConfig, MalformedSamlResponse, SamlResponseRefused
from ontrackio.identity.signin.external import METHOD_SAML, ExternalIdentity
from ontrackio.identity.sso.saml import rules

# A form value (base64) larger than this is refused before decoding: an Entra response with
# a few hundred groups is ~60 KiB.
MAX_RESPONSE_CHARS = 512 * 1024
MAX_RELAY_STATE = 1024  # what we send is a short id; SAML bindings allow 80 bytes
MAX_NAME_ID = 512
MAX_ATTRIBUTE_VALUES = 200  # per attribute kept for the identity (groups)
# A bearer confirmation valid for longer than this is refused: its id would have to stay
# in the replay cache as long.
MAX_LIFETIME = dt.timedelta(hours=24)
CLOCK_DRIFT = dt.timedelta(seconds=C.ALLOWED_CLOCK_DRIFT)
NS = {"samlp": C.NS_SAMLP, "saml": C.NS_SAML, "ds": C.NS_DS}
RESPONSE_TAG = f"{{{C.NS_SAMLP}}}Response"
_BASE64_SPACE = re.compile(r"[ \t\r\n]+")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,253}\Z")

# python3-saml's validation codes, as the cause the audit trail records.
_E = OneLogin_Saml2_ValidationError
CAUSES = {
    _E.INVALID_SIGNATURE: "signature_invalid",
    _E.NO_SIGNATURE_FOUND: "signature_missing",
    _E.NO_SIGNED_ASSERTION: "assertion_unsigned",
    _E.WRONG_SIGNED_ELEMENT: "signature_wrapping",
    _E.ID_NOT_FOUND_IN_SIGNED_ELEMENT: "signature_wrapping",
    _E.DUPLICATED_ID_IN_SIGNED_ELEMENTS: "signature_wrapping",
    _E.INVALID_SIGNED_ELEMENT: "signature_wrapping",
    _E.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS: "signature_wrapping",
    _E.UNEXPECTED_SIGNED_ELEMENTS: "signature_wrapping",
    _E.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE: "signature_wrapping",
    _E.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION: "signature_wrapping",
    _E.WRONG_NUMBER_OF_SIGNATURES: "signature_wrapping",
    _E.WRONG_NUMBER_OF_ASSERTIONS: "assertion_count",
    _E.DEPRECATED_SIGNATURE_METHOD: "deprecated_algorithm",
    _E.DEPRECATED_DIGEST_METHOD: "deprecated_algorithm",
    _E.WRONG_AUDIENCE: "audience",
    _E.WRONG_DESTINATION: "destination",
    _E.EMPTY_DESTINATION: "destination",
    _E.WRONG_SUBJECTCONFIRMATION: "subject_confirmation",
    _E.ASSERTION_EXPIRED: "expired",
    _E.RESPONSE_EXPIRED: "expired",
    _E.SESSION_EXPIRED: "expired",
    _E.ASSERTION_TOO_EARLY: "not_yet_valid",
    _E.WRONG_ISSUER: "issuer",
    _E.ISSUER_MULTIPLE_IN_RESPONSE: "issuer",
    _E.ISSUER_NOT_FOUND_IN_ASSERTION: "issuer",
    _E.WRONG_INRESPONSETO: "in_response_to",
    _E.STATUS_CODE_IS_NOT_SUCCESS: "idp_status",
    _E.INVALID_XML_FORMAT: "schema",
    _E.NO_NAMEID: "name_id",
    _E.EMPTY_NAMEID: "name_id",
}
# What python3-saml raises from inside is_valid on a document whose shape it did not expect
# (a Reference without URI, a time that does not parse): the input's fault, a 400.
_SHAPE_ERRORS = (ValueError, TypeError, AttributeError, IndexError, KeyError, etree.LxmlError)


class _Parsers(threading.local):
    """lxml parsers are not shared between threads (the gRPC server has a pool)."""

    def __init__(self) -> None:
        self.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            remove_comments=False,  # seen, so they can be refused
            remove_pis=False,
            huge_tree=False,
            collect_ids=False,
        )


_parsers = _Parsers()


class _CompiledSchemas(threading.local):
    """python3-saml's schemas compiled once per thread, by file (XMLSchema objects keep an
    error log of their own, so they are not shared between threads)."""

    def __init__(self) -> None:
        self.by_file: dict[str, etree.XMLSchema] = {}

    def __call__(self, tree: etree._ElementTree) -> etree.XMLSchema:
        url = tree.docinfo.URL
        schema = self.by_file.get(url) if url else None
        if schema is None:
            schema = etree.XMLSchema(tree)
            if url:
                self.by_file[url] = schema
        return schema


def compile_schemas_once() -> None:
    """Make python3-saml compile its XSD schemas once per thread instead of on every
    response (``OneLogin_Saml2_XML.validate_xml`` parses and compiles
    saml-schema-protocol-2.0.xsd and the schemas it imports each time: ~45 % of a
    ``process_response``). The same schema files validate the same documents; only the
    compilation is kept. Through python3-saml's own hook (``_schema_class``, the class it
    compiles with), for the whole process: identity's SAML service calls it when it starts
    (``api.SamlServicer``); the bench's python3-saml baseline runs in processes that do not."""
    if not isinstance(OneLogin_Saml2_XML._schema_class, _CompiledSchemas):
        OneLogin_Saml2_XML._schema_class = _CompiledSchemas()


def parse_xml(raw: bytes) -> etree._Element:
    """``raw`` as an XML document we accept, or MalformedSamlResponse: no DTD (so no entity
    declarations: XXE, billion laughs), no comments or processing instructions (a comment
    splitting a NameID is the classic truncation attack)."""
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:  # never parsed at all (billion laughs)
        raise MalformedSamlResponse("dtd")
    try:
        root = etree.fromstring(raw, _parsers.parser)
    except (etree.XMLSyntaxError, ValueError):
        raise MalformedSamlResponse("not_xml") from None
    if root is None:
        raise MalformedSamlResponse("not_xml")
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise MalformedSamlResponse("dtd")
    if root.xpath("boolean(//comment())"):
        raise MalformedSamlResponse("comment")
    if root.xpath("boolean(//processing-instruction())"):
        raise MalformedSamlResponse("processing_instruction")
    return root


def decode(form_value: str) -> tuple[str, etree._Element]:
    """The SAMLResponse form value as (compact base64, parsed root); MalformedSamlResponse
    when it is not one (see module docstring)."""
    if not isinstance(form_value, str) or len(form_value) > MAX_RESPONSE_CHARS:
        raise MalformedSamlResponse("too_large")
    compact = _BASE64_SPACE.sub("", form_value)  # IdPs may wrap base64 lines
    if not compact:
        raise MalformedSamlResponse("empty")
    # Canonical base64 only: Python's decoder, strict as it is, still takes padding after a
    # complete quantum ("0000=") as the 3 bytes before it; so is the length checked first.
    if len(compact) % 4:
        raise MalformedSamlResponse("not_base64")
    try:
        raw = base64.b64decode(compact.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedSamlResponse("not_base64") from None
    root = parse_xml(raw)
    if root.tag != RESPONSE_TAG:
        raise MalformedSamlResponse("not_a_response")
    return compact, root


@functools.lru_cache(maxsize=256)
def onelogin_settings(
    config: rules.IdpConfig, sp: rules.SpEndpoints, key: rules.SpKeyPair | None
) -> OneLogin_Saml2_Settings:
    """python3-saml's settings object (parsing certificates once per configuration)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return OneLogin_Saml2_Settings(rules.settings(config, sp, key), sp_validation_only=True)
    except OneLogin_Saml2_Error as exc:
        raise InvalidSamlConfig(f"the SAML configuration is not usable: {exc}") from None


@dataclass(frozen=True)
class Verified:
    """A response python3-saml and we accepted: who, and what the database must check."""

    identity: ExternalIdentity
    assertion_id: str
    in_response_to: str | None  # None: unsolicited (IdP-initiated)
    expires_at: dt.datetime  # keep the assertion id in the replay cache until then
    name_id_format: str


def python3_saml_check(
    compact: str, settings: OneLogin_Saml2_Settings, sp: rules.SpEndpoints
) -> OneLogin_Saml2_Response:
    """python3-saml's own construction and ``is_valid``, errors sorted into ours."""
    try:
        response = OneLogin_Saml2_Response(settings, compact)
    except (OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError, xmlsec.Error):
        raise SamlResponseRefused("undecryptable") from None  # an EncryptedAssertion
    except (binascii.Error, *_SHAPE_ERRORS):
        raise MalformedSamlResponse("not_xml") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            response.is_valid(sp.request_data(), raise_exceptions=True)
    except OneLogin_Saml2_ValidationError as exc:
        raise SamlResponseRefused(CAUSES.get(exc.code, f"invalid_{exc.code}")) from None
    except (OneLogin_Saml2_Error, xmlsec.Error):
        raise SamlResponseRefused("signature_invalid") from None
    except _SHAPE_ERRORS:
        raise MalformedSamlResponse("unexpected_shape") from None
    return response


def _time(value: str | None, cause: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return dt.datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(value), dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise MalformedSamlResponse(cause) from None


def our_checks(
    response: OneLogin_Saml2_Response, sp: rules.SpEndpoints, now: dt.datetime
) -> tuple[etree._Element, str | None, dt.datetime]:
    """(the signed assertion, its InResponseTo or None, until when to remember its id)."""
    doc = response.get_xml_document()
    assertions = doc.xpath("/samlp:Response/saml:Assertion", namespaces=NS)
    if len(assertions) != 1:
        raise SamlResponseRefused("assertion_count")
    assertion = assertions[0]
    refs = assertion.xpath("ds:Signature/ds:SignedInfo/ds:Reference/@URI", namespaces=NS)
    if refs != ["#" + (assertion.get("ID") or "")]:
        raise SamlResponseRefused("signature_wrapping")
    audiences = assertion.xpath(
        "saml:Conditions/saml:AudienceRestriction/saml:Audience/text()", namespaces=NS
    )
    if sp.entity_id not in [a.strip() for a in audiences]:
        raise SamlResponseRefused("audience")
    destination = doc.get("Destination")
    if destination is not None and destination != sp.acs_url:
        raise SamlResponseRefused("destination")
    confirmations = []
    for scd in assertion.xpath(
        "saml:Subject/saml:SubjectConfirmation[@Method=$bearer]/saml:SubjectConfirmationData",
        namespaces=NS,
        bearer=C.CM_BEARER,
    ):
        not_after = _time(scd.get("NotOnOrAfter"), "bad_time")
        not_before = _time(scd.get("NotBefore"), "bad_time")
        if scd.get("Recipient") != sp.acs_url or not_after is None or not_after <= now:
            continue
        if not_before is not None and not_before > now:
            continue
        confirmations.append((scd.get("InResponseTo"), not_after))
    if not confirmations:
        raise SamlResponseRefused("subject_confirmation")
    answered = {irt for irt, _ in confirmations}
    if len(answered) != 1:
        raise SamlResponseRefused("in_response_to")
    in_response_to = answered.pop()
    if doc.get("InResponseTo") != in_response_to:  # unsigned, or signed and different
        raise SamlResponseRefused("in_response_to")
    not_after = max(t for _, t in confirmations)
    if not_after - now > MAX_LIFETIME:
        raise SamlResponseRefused("lifetime")
    for cond in assertion.xpath("saml:Conditions[@NotOnOrAfter]", namespaces=NS):
        cond_end = _time(cond.get("NotOnOrAfter"), "bad_time")
        if cond_end is not None:
            not_after = max(not_after, min(cond_end, now + MAX_LIFETIME) + CLOCK_DRIFT)
    return assertion, in_response_to, not_after


def _first(attributes: dict, name: str) -> str:
    if not name:
        return ""
    for value in attributes.get(name, ()):
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def identity_of(
    response: OneLogin_Saml2_Response, config: rules.IdpConfig
) -> tuple[ExternalIdentity, str]:
    """The mapped identity: subject the NameID, email the mapped attribute (or the NameID
    when its format is emailAddress), MFA evidence the AuthnContextClassRef values."""
    try:
        data = response.get_nameid_data()
        attributes = response.get_attributes()
        contexts = response.get_authn_contexts()
    except OneLogin_Saml2_ValidationError as exc:
        raise SamlResponseRefused(CAUSES.get(exc.code, f"invalid_{exc.code}")) from None
    name_id = data.get("Value") or ""
    fmt = data.get("Format") or rules.NAMEID_UNSPECIFIED
    if len(name_id) > MAX_NAME_ID or not name_id.isprintable() or name_id != name_id.strip():
        raise SamlResponseRefused("name_id")
    email = _first(attributes, config.email_attribute)
    if not email and fmt == rules.NAMEID_EMAIL:
        email = name_id
    if email and not _EMAIL.match(email):
        email = ""
    groups = [
        v.strip()
        for v in attributes.get(config.groups_attribute, ())[:MAX_ATTRIBUTE_VALUES]
        if isinstance(v, str) and v.strip()
    ]
    mapped = {"name_id_format": fmt}
    if groups:
        mapped["groups"] = ",".join(groups)[:4000]
    identity = ExternalIdentity(
        method=METHOD_SAML,
        issuer=config.idp_entity_id,
        subject=name_id,
        email=email,
        email_verified=bool(email),
        display_name=_first(attributes, config.name_attribute)[:200],
        mfa_evidence=tuple(c for c in contexts if isinstance(c, str) and c),
        attributes=mapped,
    )
    return identity, fmt


def verify(
    form_value: str,
    config: rules.IdpConfig,
    sp: rules.SpEndpoints,
    key: rules.SpKeyPair | None = None,
    *,
    now: dt.datetime | None = None,
) -> Verified:
    """Every check that needs no database (module docstring), in order; raises
    MalformedSamlResponse or SamlResponseRefused."""
    compact, _ = decode(form_value)
    response = python3_saml_check(compact, onelogin_settings(config, sp, key), sp)
    assertion, in_response_to, expires_at = our_checks(response, sp, now or dt.datetime.now(dt.UTC))
    identity, fmt = identity_of(response, config)
    assertion_id = assertion.get("ID") or ""
    return Verified(identity, assertion_id, in_response_to, expires_at, fmt)


def relay_state(value: str) -> str:
    """The RelayState as we read it: bounded printable text, else "" (it only names a
    request of ours, never a URL to go to)."""
    value = value or ""
    return value if len(value) <= MAX_RELAY_STATE and value.isprintable() else ""
