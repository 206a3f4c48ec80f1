"""A real SAML 2.0 identity provider for tests and the bench: pysaml2 signing with xmlsec1.

``SamlIdP`` builds Responses the way an IdP does (pysaml2's ``Server.create_authn_response``)
and signs them with pysaml2's security context, which runs the ``xmlsec1`` binary: the
signatures our SP checks are made by another implementation than the one checking them.
Every knob an attack test needs is a parameter of ``response``: who is named, for which
request, audience, recipient and destination, validity window, which parts are signed, with
which algorithm and which key (a rolled-over key, or another tenant's IdP). The assertion is
built unsigned by pysaml2, the fields a test overrides are set, then pysaml2 signs.

``serve()`` runs it over HTTP on loopback for browser and end-to-end tests: ``GET /metadata``
(the IdP's metadata, every signing certificate listed) and ``GET /sso`` (HTTP-Redirect
binding: the AuthnRequest is parsed by pysaml2; the answer is an HTML form that posts the
signed Response and the RelayState to the request's ACS URL, for ``user``).

Not for production: keys live in a temporary directory and anyone may sign in as anyone.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

with warnings.catch_warnings():  # pysaml2 imports cipher modes cryptography has moved
    warnings.simplefilter("ignore")
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
    from saml2.server import Server
    from saml2.sigver import pre_signature_part

NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
}
ASSERTION_NODE = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
RESPONSE_NODE = "urn:oasis:names:tc:SAML:2.0:protocol:Response"
ALGORITHMS = {
    "sha256": (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    ),
    "sha1": (
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
    ),
}
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
ENTRA_MFA = "http://schemas.microsoft.com/claims/multipleauthn"
# Attribute names as Okta and Entra send them by default.
EMAIL_ATTRIBUTE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
NAME_ATTRIBUTE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
GROUPS_ATTRIBUTE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"


@dataclass(frozen=True)
class KeyPair:
    """An RSA signing key and its self-signed certificate, the key also in a file (xmlsec1
    reads keys from files)."""

    key_pem: str
    cert_pem: str
    key_file: Path

    @property
    def cert_b64(self) -> str:
        """The certificate as metadata and python3-saml settings carry it (base64 DER)."""
        return "".join(self.cert_pem.strip().splitlines()[1:-1])


def new_keypair(common_name: str, directory: Path, *, bits: int = 2048) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = Path(tempfile.mkstemp(prefix="samlidp-", suffix=".pem", dir=directory)[1])
    path.write_text(key_pem)
    path.chmod(0o600)
    return KeyPair(key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), path)


@dataclass
class User:
    """Who the HTTP IdP signs in (``serve``)."""

    name_id: str = "ann@acme.example"
    name_id_format: str = NAMEID_FORMAT_EMAILADDRESS
    attributes: Mapping[str, Sequence[str]] = field(
        default_factory=lambda: {EMAIL_ATTRIBUTE: ["ann@acme.example"], NAME_ATTRIBUTE: ["Ann"]}
    )
    authn_class: str = PASSWORD_PROTECTED


class SamlIdP:
    """One IdP (one entity id) with one or more signing keys; ``signer`` picks the key used."""

    def __init__(
        self,
        entity_id: str = "https://idp.test/metadata",
        *,
        sso_url: str = "https://idp.test/sso",
        directory: Path | None = None,
    ) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="samlidp-")
        self.directory = Path(directory or self._tmp.name)  # type: ignore[union-attr]
        self.entity_id = entity_id
        self.sso_url = sso_url
        self.keys: list[KeyPair] = [new_keypair(entity_id, self.directory)]
        self.signer = self.keys[0]
        self.user = User()
        conf = IdPConfig()
        conf.load(
            {
                "entityid": entity_id,
                "service": {
                    "idp": {
                        "endpoints": {"single_sign_on_service": [(sso_url, BINDING_HTTP_REDIRECT)]},
                        "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                        "policy": {"default": {"lifetime": {"minutes": 5}}},
                        "want_authn_requests_signed": False,
                    }
                },
                "key_file": str(self.signer.key_file),
                "cert_file": str(self._cert_file(self.signer)),
                "xmlsec_binary": "/usr/bin/xmlsec1",
                "metadata": {},
            }
        )
        self.server = Server(config=conf)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def _cert_file(self, pair: KeyPair) -> Path:
        path = pair.key_file.with_suffix(".crt")
        path.write_text(pair.cert_pem)
        return path

    # -- keys and metadata ------------------------------------------------------------------

    def add_key(self) -> KeyPair:
        """A new signing key (certificate rollover); ``signer`` is unchanged."""
        pair = new_keypair(self.entity_id, self.directory)
        self.keys.append(pair)
        return pair

    def metadata_xml(self, keys: Sequence[KeyPair] | None = None) -> str:
        """The IdP's metadata: entity id, SSO endpoints (redirect and POST), each signing
        certificate of ``keys`` (default: every key) as a KeyDescriptor."""
        descriptors = "".join(
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f"{k.cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            for k in (self.keys if keys is None else keys)
        )
        url = html.escape(self.sso_url, quote=True)
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<md:EntityDescriptor xmlns:md="{NS["md"]}" xmlns:ds="{NS["ds"]}"'
            f' entityID="{html.escape(self.entity_id, quote=True)}">'
            '<md:IDPSSODescriptor WantAuthnRequestsSigned="false"'
            ' protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f"{descriptors}"
            f"<md:NameIDFormat>{NAMEID_FORMAT_EMAILADDRESS}</md:NameIDFormat>"
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_REDIRECT}" Location="{url}"/>'
            f'<md:SingleSignOnService Binding="{BINDING_HTTP_POST}" Location="{url}"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    def trust_sp(self, metadata_xml: str) -> None:
        """Load an SP's metadata (e.g. ours, from GET /auth/saml/metadata)."""
        self.server.metadata.load("inline", metadata_xml)

    def _know_sp(self, entity_id: str, acs_url: str) -> None:
        """pysaml2 answers only SPs in its metadata: one never seen gets a minimal entry."""
        try:
            self.server.metadata[entity_id]
            return
        except KeyError:
            pass
        e, a = html.escape(entity_id, quote=True), html.escape(acs_url, quote=True)
        self.trust_sp(
            f'<md:EntityDescriptor xmlns:md="{NS["md"]}" entityID="{e}">'
            '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{a}" index="0"/>'
            "</md:SPSSODescriptor></md:EntityDescriptor>"
        )

    # -- responses --------------------------------------------------------------------------

    def response(
        self,
        *,
        sp_entity_id: str,
        acs_url: str,
        in_response_to: str | None = None,
        name_id: str = "ann@acme.example",
        name_id_format: str = NAMEID_FORMAT_EMAILADDRESS,
        attributes: Mapping[str, Sequence[str]] | None = None,
        authn_class: str = PASSWORD_PROTECTED,
        sign_assertion: bool = True,
        sign_response: bool = False,
        algorithm: str = "sha256",
        signer: KeyPair | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        recipient: str | None = None,
        destination: str | None = None,
        not_before: dt.datetime | None = None,
        not_on_or_after: dt.datetime | None = None,
    ) -> str:
        """A Response (XML text) for the SP ``sp_entity_id`` at ``acs_url``.

        Defaults are what a correct IdP sends: audience the SP entity id, recipient and
        destination the ACS URL, valid from now for five minutes, assertion signed with
        RSA-SHA256 by ``signer`` (default ``self.signer``). ``in_response_to`` None makes an
        unsolicited (IdP-initiated) response. ``issuer`` overrides both Issuer elements.
        """
        attributes = {EMAIL_ATTRIBUTE: [name_id]} if attributes is None else attributes
        pair = signer or self.signer
        self._know_sp(sp_entity_id, acs_url)
        raw = self.server.create_authn_response(
            {k: list(v) for k, v in attributes.items()},
            in_response_to,
            acs_url,
            sp_entity_id,
            name_id=NameID(format=name_id_format, text=name_id),
            authn={"class_ref": authn_class, "authn_auth": self.entity_id},
            sign_assertion=False,
            sign_response=False,
        )
        xml = raw if isinstance(raw, bytes | str) else raw.to_string()
        root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
        if in_response_to is None:
            root.attrib.pop("InResponseTo", None)
        assertion = root.find("saml:Assertion", NS)
        if assertion is None:
            raise RuntimeError("pysaml2 made no assertion: " + etree.tostring(root).decode())
        now = dt.datetime.now(dt.UTC)
        start = not_before or now - dt.timedelta(seconds=1)
        end = not_on_or_after or now + dt.timedelta(minutes=5)
        for cond in assertion.iterfind("saml:Conditions", NS):
            cond.set("NotBefore", _instant(start))
            cond.set("NotOnOrAfter", _instant(end))
            for aud in cond.iterfind("saml:AudienceRestriction/saml:Audience", NS):
                aud.text = audience if audience is not None else sp_entity_id
        for scd in assertion.iterfind("saml:Subject/saml:SubjectConfirmation/*", NS):
            scd.set("NotOnOrAfter", _instant(end))
            scd.set("Recipient", recipient if recipient is not None else acs_url)
            if in_response_to is None:
                scd.attrib.pop("InResponseTo", None)
        root.set("Destination", destination if destination is not None else acs_url)
        if issuer is not None:
            for el in (root.find("saml:Issuer", NS), assertion.find("saml:Issuer", NS)):
                if el is not None:
                    el.text = issuer
        if sign_assertion:
            _add_template(assertion, pair, algorithm)
        if sign_response:
            _add_template(root, pair, algorithm)
        text = etree.tostring(root, encoding="unicode")
        if sign_assertion:
            text = self._sign(text, ASSERTION_NODE, assertion.get("ID"), pair)
        if sign_response:
            text = self._sign(text, RESPONSE_NODE, root.get("ID"), pair)
        return text

    def encoded(self, **kwargs) -> str:
        """``response(**kwargs)`` as the SAMLResponse form value (base64)."""
        return encode(self.response(**kwargs))

    def _sign(self, xml: str, node: str, node_id: str, pair: KeyPair) -> str:
        signed = self.server.sec.sign_statement(
            xml, node_name=node, key_file=str(pair.key_file), node_id=node_id
        )
        return signed.decode() if isinstance(signed, bytes) else signed

    # -- over HTTP --------------------------------------------------------------------------

    def answer_authn_request(self, saml_request: str, relay_state: str) -> tuple[str, str]:
        """For a redirect-binding SAMLRequest: (the ACS URL to post to, the HTML form)."""
        req = self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT).message
        acs = req.assertion_consumer_service_url
        u = self.user
        body = self.encoded(
            sp_entity_id=req.issuer.text,
            acs_url=acs,
            in_response_to=req.id,
            name_id=u.name_id,
            name_id_format=u.name_id_format,
            attributes=u.attributes,
            authn_class=u.authn_class,
        )
        return acs, auto_post_form(acs, body, relay_state)

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve /metadata and /sso on loopback; yields the base URL. ``sso_url`` and the
        metadata's SSO location become ``<base>/sso`` while it runs."""
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet in test output
                pass

            def _send(self, status: int, ctype: str, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/metadata":
                    return self._send(200, "application/samlmetadata+xml", idp.metadata_xml())
                if parts.path == "/sso":
                    q = parse_qs(parts.query)
                    try:
                        _, form = idp.answer_authn_request(
                            q["SAMLRequest"][0], q.get("RelayState", [""])[0]
                        )
                    except Exception as exc:  # noqa: BLE001 - a test IdP says what it refused
                        return self._send(400, "text/plain", f"bad AuthnRequest: {exc}")
                    return self._send(200, "text/html; charset=utf-8", form)
                return self._send(404, "text/plain", "not found")

        httpd = ThreadingHTTPServer((host, port), Handler)
        base = f"http://{host}:{httpd.server_address[1]}"
        old = self.sso_url
        self._set_sso_url(base + "/sso")
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield base
        finally:
            httpd.shutdown()
            httpd.server_close()
            self._set_sso_url(old)

    def _set_sso_url(self, url: str) -> None:
        """Our SSO URL, also where pysaml2 expects AuthnRequests to be sent (it refuses a
        request whose Destination is not one of its endpoints)."""
        self.sso_url = url
        self.server.config.setattr(
            "idp", "endpoints", {"single_sign_on_service": [(url, BINDING_HTTP_REDIRECT)]}
        )


def encode(xml: str) -> str:
    return base64.b64encode(xml.encode()).decode()


def auto_post_form(acs_url: str, saml_response: str, relay_state: str) -> str:
    """The HTTP-POST binding's page: a form posting to the ACS (submitted by script, or by
    the button without it)."""
    a = html.escape(acs_url, quote=True)
    return (
        "<!doctype html><html><body onload='document.forms[0].submit()'>"
        f'<form method="post" action="{a}">'
        f'<input type="hidden" name="SAMLResponse" value="{html.escape(saml_response)}">'
        f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">'
        '<button type="submit">Continue</button></form></body></html>'
    )


def _instant(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _add_template(element: etree._Element, pair: KeyPair, algorithm: str) -> None:
    """A Signature template right after the element's Issuer (where the schema wants it)."""
    sign_alg, digest_alg = ALGORITHMS[algorithm]
    template = pre_signature_part(
        element.get("ID"), pair.cert_b64, sign_alg=sign_alg, digest_alg=digest_alg
    )
    sig = etree.fromstring(template.to_string())
    issuer = element.find("saml:Issuer", NS)
    if issuer is not None:
        issuer.addnext(sig)
    else:
        element.insert(0, sig)
