"""The tenant's SAML configuration and the python3-saml settings built from it (pure rules).

``validate_config`` turns what an admin sends (or what metadata says) into an ``IdpConfig``
or raises ``InvalidSamlConfig`` naming the field. ``SpEndpoints.from_origin`` derives our
entity id and ACS URL from the tenant's canonical origin, which the gateway passes (it is
never read from a request's headers). ``settings`` is the strict python3-saml settings
dictionary: signed assertions required, SHA-1 refused, the requested AuthnContext the
tenant's (none by default), every IdP signing certificate accepted (rollover).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ontrackio.identity.errors import InvalidSamlConfig

ACS_PATH = "/auth/saml/acs"
METADATA_PATH = "/auth/saml/metadata"
LOGIN_PATH = "/auth/saml/login"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

MAX_CERTIFICATES = 4  # the current one and its successors during a rollover
MAX_URI = 1024
MAX_ATTRIBUTE_NAME = 256
MAX_CONTEXTS = 8
MIN_RSA_BITS = 2048
COMPARISONS = ("exact", "minimum", "better", "maximum")

_PRINTABLE_URI = re.compile(r"[!-~]+\Z")  # visible ASCII, no spaces: entity ids, URIs
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class IdpConfig:
    """One tenant's IdP, as stored. ``certificates``: base64 DER, every one trusted."""

    idp_entity_id: str
    sso_url: str
    certificates: tuple[str, ...]
    email_attribute: str = ""
    name_attribute: str = ""
    groups_attribute: str = ""
    allow_idp_initiated: bool = False
    requested_authn_context: tuple[str, ...] = ()
    authn_context_comparison: str = "exact"

    def audit_view(self) -> dict[str, Any]:
        """What the audit trail records of it: certificates as SHA-256 fingerprints."""
        return {
            "idp_entity_id": self.idp_entity_id,
            "sso_url": self.sso_url,
            "certificates": [fingerprint(c) for c in self.certificates],
            "email_attribute": self.email_attribute,
            "name_attribute": self.name_attribute,
            "groups_attribute": self.groups_attribute,
            "allow_idp_initiated": self.allow_idp_initiated,
            "requested_authn_context": list(self.requested_authn_context),
            "authn_context_comparison": self.authn_context_comparison,
        }


def _uri(value: str, name: str, *, required: bool = True) -> str:
    value = (value or "").strip()
    if not value:
        if required:
            raise InvalidSamlConfig(f"{name} is required")
        return ""
    if len(value) > MAX_URI or not _PRINTABLE_URI.match(value):
        raise InvalidSamlConfig(
            f"{name} must be at most {MAX_URI} visible ASCII characters, without spaces"
        )
    return value


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_https_url(value: str, name: str, *, allow_loopback_http: bool) -> str:
    """An absolute https URL with a host and no user info (http only for a loopback host,
    and only when ``allow_loopback_http``: a test setting)."""
    value = _uri(value, name)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidSamlConfig(f"{name} is not a valid URL") from None
    host = parts.hostname or ""
    if not host or parts.username is not None or parts.password is not None or port == 0:
        raise InvalidSamlConfig(f"{name} must be an absolute URL with a host and no user info")
    if parts.scheme == "https" or (
        parts.scheme == "http" and allow_loopback_http and is_loopback_host(host)
    ):
        return value
    raise InvalidSamlConfig(f"{name} must be an https:// URL")


def certificate_b64(text: str) -> str:
    """A certificate given as PEM or as base64 DER, checked and returned as base64 DER.

    Refused: not a certificate, a key other than RSA (at least 2048 bits) or EC."""
    text = (text or "").strip()
    match = _PEM.search(text)
    body = "".join((match.group(1) if match else text).split())
    try:
        der = base64.b64decode(body, validate=True)
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
    except (binascii.Error, ValueError):
        raise InvalidSamlConfig("a certificate is not a PEM or base64 X.509 certificate") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidSamlConfig(f"a certificate's RSA key is shorter than {MIN_RSA_BITS} bits")
    elif not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidSamlConfig("a certificate's key must be RSA or EC")
    return base64.b64encode(der).decode()


def fingerprint(cert_b64: str) -> str:
    """SHA-256 fingerprint of a base64 DER certificate, hex with colons."""
    cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _attribute(value: str, name: str) -> str:
    value = (value or "").strip()
    if len(value) > MAX_ATTRIBUTE_NAME or (value and not value.isprintable()):
        raise InvalidSamlConfig(f"{name} must be at most {MAX_ATTRIBUTE_NAME} printable characters")
    return value


def validate_config(
    *,
    idp_entity_id: str,
    sso_url: str,
    certificates: Iterable[str],
    email_attribute: str = "",
    name_attribute: str = "",
    groups_attribute: str = "",
    allow_idp_initiated: bool = False,
    requested_authn_context: Iterable[str] = (),
    authn_context_comparison: str = "",
    allow_loopback_http: bool = False,
) -> IdpConfig:
    """The configuration as stored, or InvalidSamlConfig (INVALID_ARGUMENT) naming the field."""
    certs: list[str] = []
    for c in list(certificates)[: MAX_CERTIFICATES + 1]:
        b64 = certificate_b64(c)
        if b64 not in certs:
            certs.append(b64)
    if not certs:
        raise InvalidSamlConfig("at least one IdP signing certificate is required")
    if len(certs) > MAX_CERTIFICATES:
        raise InvalidSamlConfig(f"at most {MAX_CERTIFICATES} IdP signing certificates")
    contexts = [c.strip() for c in list(requested_authn_context)[: MAX_CONTEXTS + 1]]
    if len(contexts) > MAX_CONTEXTS:
        raise InvalidSamlConfig(f"at most {MAX_CONTEXTS} requested AuthnContext classes")
    contexts = [_uri(c, "requested_authn_context") for c in contexts]
    comparison = (authn_context_comparison or "exact").strip()
    if comparison not in COMPARISONS:
        raise InvalidSamlConfig(f"authn_context_comparison must be one of {', '.join(COMPARISONS)}")
    return IdpConfig(
        idp_entity_id=_uri(idp_entity_id, "idp_entity_id"),
        sso_url=check_https_url(sso_url, "sso_url", allow_loopback_http=allow_loopback_http),
        certificates=tuple(certs),
        email_attribute=_attribute(email_attribute, "email_attribute"),
        name_attribute=_attribute(name_attribute, "name_attribute"),
        groups_attribute=_attribute(groups_attribute, "groups_attribute"),
        allow_idp_initiated=bool(allow_idp_initiated),
        requested_authn_context=tuple(dict.fromkeys(contexts)),
        authn_context_comparison=comparison,
    )


_ORIGIN = re.compile(r"(https?)://([a-z0-9.-]{1,253})(?::([0-9]{1,5}))?\Z")


@dataclass(frozen=True)
class SpEndpoints:
    """Our side for one tenant, from its canonical origin (``https://acme.example.com``)."""

    origin: str
    https: bool
    host: str  # with the port when not the scheme's default

    @classmethod
    def from_origin(cls, origin: str) -> SpEndpoints:
        """InvalidSamlRequest-free: a bad origin is the gateway's bug, still refused as
        INVALID_ARGUMENT (InvalidSamlConfig) rather than trusted."""
        m = _ORIGIN.match(origin or "")
        if not m or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
            raise InvalidSamlConfig("canonical_origin must be scheme://host[:port]")
        scheme, host, port = m.groups()
        if port is not None and (scheme, port) in (("https", "443"), ("http", "80")):
            port = None
        hostport = host if port is None else f"{host}:{port}"
        return cls(f"{scheme}://{hostport}", scheme == "https", hostport)

    @property
    def entity_id(self) -> str:
        return self.origin + METADATA_PATH

    @property
    def acs_url(self) -> str:
        return self.origin + ACS_PATH

    def request_data(self) -> dict[str, Any]:
        """python3-saml's view of the request that reached the ACS: built from the canonical
        origin only, so its Destination and Recipient checks compare with our own URL."""
        return {
            "https": "on" if self.https else "off",
            "http_host": self.host,
            "script_name": ACS_PATH,
            "get_data": {},
            "post_data": {},
        }


@dataclass(frozen=True)
class SpKeyPair:
    cert_pem: str
    key_pem: str = field(repr=False)


def settings(config: IdpConfig, sp: SpEndpoints, key: SpKeyPair | None = None) -> dict[str, Any]:
    """python3-saml's settings for this tenant: strict, assertions signed (SHA-256 or
    better: ``rejectDeprecatedAlgorithm``), every configured certificate trusted, the
    requested AuthnContext the tenant's (``False``, none, by default)."""
    sp_part: dict[str, Any] = {
        "entityId": sp.entity_id,
        "assertionConsumerService": {"url": sp.acs_url, "binding": BINDING_POST},
        "NameIDFormat": NAMEID_UNSPECIFIED,
    }
    if key is not None:  # encrypted assertions are decrypted with it; metadata lists it
        sp_part["x509cert"] = key.cert_pem
        sp_part["privateKey"] = key.key_pem
    return {
        "strict": True,
        "debug": False,
        "sp": sp_part,
        "idp": {
            "entityId": config.idp_entity_id,
            "singleSignOnService": {"url": config.sso_url, "binding": BINDING_REDIRECT},
            "x509certMulti": {"signing": list(config.certificates)},
        },
        "security": {
            "authnRequestsSigned": False,
            "wantAssertionsSigned": True,
            "wantMessagesSigned": False,  # Okta and Entra sign the assertion by default
            "wantAssertionsEncrypted": False,
            "wantNameId": True,
            "wantNameIdEncrypted": False,
            "wantAttributeStatement": False,  # an IdP may send only the NameID
            "allowRepeatAttributeName": False,
            "rejectDeprecatedAlgorithm": True,
            "requestedAuthnContext": list(config.requested_authn_context) or False,
            "requestedAuthnContextComparison": config.authn_context_comparison,
            "failOnAuthnContextMismatch": False,  # judged by the MFA policy, not here
            "signatureAlgorithm": RSA_SHA256,
            "digestAlgorithm": SHA256,
            "signMetadata": False,
            "allowSingleLabelDomains": False,
        },
    }


# -- the browser a sign-in began in -------------------------------------------------------------

BINDING_BYTES = 32


def new_binding() -> str:
    """The secret of the cookie binding an AuthnRequest to the browser it was issued to."""
    return secrets.token_urlsafe(BINDING_BYTES)


def binding_hash(key: bytes, binding: str) -> bytes:
    """What the database keeps of a binding (keyed: the database alone cannot forge one)."""
    return hmac.new(key, b"saml-browser:" + binding.encode(), hashlib.sha256).digest()


def same_browser(key: bytes, stored: bytes | None, presented: str) -> bool:
    """Whether the presented cookie is the one set with the request (constant time)."""
    if not stored or not presented or len(presented) > 2 * BINDING_BYTES:
        return False
    return hmac.compare_digest(stored, binding_hash(key, presented))
