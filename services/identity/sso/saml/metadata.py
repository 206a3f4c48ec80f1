"""Metadata: the IdP's, imported from XML or fetched from a URL, and ours, for the IdP.

``parse_idp_metadata`` reads an EntityDescriptor (our hardened parse first: no DTD, no
entities; then python3-saml's ``OneLogin_Saml2_IdPMetadataParser`` on that one entity) and
returns the configuration fields it names: entity id, SSO URL (HTTP-Redirect binding
preferred, else HTTP-POST) and every signing certificate. An aggregate with several
entities needs the entity id to pick.

``fetch`` gets metadata from an https URL with a timeout and a size cap, follows no
redirect, and connects only to public addresses (the address it checked is the one it
connects to, so a DNS answer cannot change in between); a loopback http URL is allowed only
when a test setting says so.

``sp_metadata`` is python3-saml's SP metadata for the tenant's canonical origin.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from ontrackio.identity.errors import (
    InvalidSamlConfig,
    MalformedSamlResponse,
    SamlMetadataUnavailable,
)
from ontrackio.identity.sso.saml import acs, rules

MAX_METADATA_BYTES = 1024 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
MD_NS = {"md": C.NS_MD}


@dataclass(frozen=True)
class ImportedIdp:
    """What an IdP's metadata says of it (the rest of the configuration is the admin's)."""

    idp_entity_id: str
    sso_url: str
    certificates: tuple[str, ...]


def parse_idp_metadata(xml: bytes, entity_id: str = "") -> ImportedIdp:
    """The IdP named by the metadata (``entity_id`` picks one of several), or
    InvalidSamlConfig saying what is missing or malformed."""
    if len(xml) > MAX_METADATA_BYTES:
        raise InvalidSamlConfig(f"metadata larger than {MAX_METADATA_BYTES} bytes")
    try:
        root = acs.parse_xml(xml)
    except MalformedSamlResponse as exc:
        raise InvalidSamlConfig(f"metadata is not acceptable XML ({exc.cause})") from None
    entities = [
        e
        for e in root.xpath(
            "descendant-or-self::md:EntityDescriptor[md:IDPSSODescriptor]", namespaces=MD_NS
        )
    ]
    if entity_id:
        entities = [e for e in entities if e.get("entityID") == entity_id]
    if not entities:
        raise InvalidSamlConfig(
            "metadata has no IdP entity" + (f" {entity_id!r}" if entity_id else "")
        )
    if len(entities) > 1:
        raise InvalidSamlConfig("metadata has several IdP entities: name the entity id")
    one = etree.tostring(entities[0])
    data: dict[str, Any] = {}
    for binding in (C.BINDING_HTTP_REDIRECT, C.BINDING_HTTP_POST):
        try:
            data = OneLogin_Saml2_IdPMetadataParser.parse(one, required_sso_binding=binding)
        except (OneLogin_Saml2_Error, etree.LxmlError, ValueError, TypeError):
            raise InvalidSamlConfig("metadata could not be read") from None
        if data.get("idp", {}).get("singleSignOnService", {}).get("url"):
            break
    idp = data.get("idp", {})
    sso = idp.get("singleSignOnService", {}).get("url") or ""
    certs = [idp["x509cert"]] if idp.get("x509cert") else []
    certs += idp.get("x509certMulti", {}).get("signing", [])
    if not sso:
        raise InvalidSamlConfig("metadata has no HTTP-Redirect or HTTP-POST SSO endpoint")
    if not certs:
        raise InvalidSamlConfig("metadata has no signing certificate")
    return ImportedIdp(idp.get("entityId") or "", sso, tuple(dict.fromkeys(certs)))


# -- fetching -----------------------------------------------------------------------------------


def _allowed_address(address: str, allow_loopback: bool) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global or (allow_loopback and ip.is_loopback)


def _resolve(host: str, port: int, allow_loopback: bool) -> tuple[int, str]:
    """The first address of ``host`` we may connect to; every address must be allowed
    (a name resolving to one private address among public ones is refused)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise SamlMetadataUnavailable(f"metadata host {host!r} does not resolve") from None
    addresses = [(info[0], info[4][0]) for info in infos]
    if not addresses or not all(_allowed_address(a, allow_loopback) for _, a in addresses):
        raise SamlMetadataUnavailable("metadata host resolves to an address that is not public")
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the address we checked, verifying the certificate for the host name."""

    def __init__(self, host: str, port: int, address: tuple[int, str], timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        family, ip = self._address
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect((ip, self.port))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: tuple[int, str], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        family, ip = self._address
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect((ip, self.port))
        self.sock = sock


def fetch(
    url: str,
    *,
    allow_loopback_http: bool = False,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    max_bytes: int = MAX_METADATA_BYTES,
) -> bytes:
    """The metadata document at ``url`` (module docstring for the rules); InvalidSamlConfig
    for a URL we never fetch, SamlMetadataUnavailable for one that did not answer well."""
    url = rules.check_https_url(url, "metadata_url", allow_loopback_http=allow_loopback_http)
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = _resolve(host, port, allow_loopback=allow_loopback_http)
    conn_type = _PinnedHTTPSConnection if https else _PinnedHTTPConnection
    conn = conn_type(host, port, address, timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("GET", target, headers={"Accept": "application/samlmetadata+xml, */*"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise SamlMetadataUnavailable(f"metadata URL answered HTTP {resp.status}")
        body = resp.read(max_bytes + 1)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise SamlMetadataUnavailable(
            f"metadata URL could not be fetched ({type(exc).__name__})"
        ) from None
    finally:
        conn.close()
    if len(body) > max_bytes:
        raise SamlMetadataUnavailable(f"metadata larger than {max_bytes} bytes")
    return body


# -- ours ---------------------------------------------------------------------------------------


def sp_metadata(sp: rules.SpEndpoints, key: rules.SpKeyPair | None) -> str:
    """Our SP metadata for the tenant: entity id, ACS (HTTP-POST), our certificate."""
    part: dict[str, Any] = {
        "entityId": sp.entity_id,
        "assertionConsumerService": {"url": sp.acs_url, "binding": rules.BINDING_POST},
        "NameIDFormat": rules.NAMEID_UNSPECIFIED,
    }
    if key is not None:
        part["x509cert"] = key.cert_pem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        s = OneLogin_Saml2_Settings(
            {
                "strict": True,
                "sp": part,
                "security": {"wantAssertionsSigned": True, "authnRequestsSigned": False},
            },
            sp_validation_only=True,
        )
        xml = s.get_sp_metadata()
    return xml.decode() if isinstance(xml, bytes) else xml
