"""End to end: the gateway terminating TLS itself (`ONTRACK_GATEWAY_TLS_CERT_FILE`/`_KEY_FILE`,
`gateway/tls.py`) negotiates TLS 1.3 with a modern client, still serves TLS 1.2 (the floor), and
refuses TLS 1.1 and 1.0 in the handshake, with real sockets and Python's ssl client.

The old-protocol clients are opened up (`@SECLEVEL=0`) so that they really offer TLS 1.0/1.1:
the refusal checked is the server's `protocol_version` alert, not the client's own policy.
"""

from __future__ import annotations

import socket
import ssl
import warnings

import pytest

from ontrackio.devtools import pki
from tests.e2e.test_gateway_kit import _read_reply, request_bytes
from tests.helpers import extra_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls_gateway(system, tmp_path_factory):
    """(port, CA PEM) of a gateway of its own serving HTTPS with a certificate for
    `localhost` issued by a CA made here."""
    d = tmp_path_factory.mktemp("gateway-tls")
    ca = pki.new_authority("OnTrackio test edge CA")
    cert, key = pki.issue(ca, system.deployment, "localhost")
    (d / "cert.pem").write_bytes(cert)
    (d / "key.pem").write_bytes(key)
    (d / "key.pem").chmod(0o600)
    (d / "ready").mkdir()
    with extra_gateway(
        system,
        "gateway-tls",
        d / "ready",
        ONTRACK_GATEWAY_TLS_CERT_FILE=str(d / "cert.pem"),
        ONTRACK_GATEWAY_TLS_KEY_FILE=str(d / "key.pem"),
        ONTRACK_GATEWAY_WORKERS="1",
    ) as port:
        yield port, ca.pem.decode()


def client(ca_pem: str, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A verifying client context; pinned to `version` (and opened up to offer it) if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 are deprecated
            context.minimum_version = context.maximum_version = version
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def handshake(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return context.wrap_socket(sock, server_hostname="localhost")
    except BaseException:
        sock.close()
        raise


def test_a_modern_client_negotiates_tls13_and_is_served_with_hsts(tls_gateway):
    port, ca = tls_gateway
    with handshake(port, client(ca)) as s:
        assert s.version() == "TLSv1.3"
        s.sendall(request_bytes("GET", "/healthz", "localhost", close=True))
        reply = _read_reply(s, bytearray())
    assert reply.status == 200 and reply.json()["status"] == "ok"
    assert reply.headers["strict-transport-security"].startswith("max-age=")


def test_a_tls12_client_is_served_with_a_forward_secret_aead_suite(tls_gateway):
    port, ca = tls_gateway
    with handshake(port, client(ca, ssl.TLSVersion.TLSv1_2)) as s:
        name, protocol, _ = s.cipher()
        assert protocol == "TLSv1.2"
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name


@pytest.mark.parametrize("version", ["TLSv1_1", "TLSv1"])
def test_tls11_and_tls10_clients_are_refused_by_the_server(tls_gateway, version):
    port, ca = tls_gateway
    with pytest.raises(ssl.SSLError) as refused:
        handshake(port, client(ca, getattr(ssl.TLSVersion, version))).close()
    # An alert received from the gateway: the client did offer the old version.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value
