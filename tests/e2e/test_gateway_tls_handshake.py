"""End to end: the gateway terminating TLS itself (`ONTRACK_GATEWAY_TLS_CERT_FILE`/`_KEY_FILE`,
`gateway/tls.py`) negotiates TLS 1.3 with a modern client, still serves TLS 1.2 (the floor), and
refuses TLS 1.1 and 1.0 in the handshake, with real sockets and Python's ssl client.

The old-protocol clients are opened up (`@SECLEVEL=0`) so that they really offer TLS 1.0/1.1;
each first completes a handshake with a permissive server of the test's own (the positive
control), so the gateway's refusal is the gateway's, not the client's own policy.
"""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from ontrackio.devtools import pki
from tests.e2e.test_gateway_kit import _read_reply, request_bytes
from tests.helpers import extra_gateway

pytestmark = pytest.mark.e2e


@dataclass
class Edge:
    port: int
    ca: str  # PEM of the CA that issued the certificate
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def tls_gateway(system, tmp_path_factory):
    """A gateway of its own serving HTTPS with a certificate for `localhost` issued by a CA
    made here."""
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
        yield Edge(port, ca.pem.decode(), d / "cert.pem", d / "key.pem")


@pytest.fixture(scope="module")
def permissive_port(tls_gateway):
    """A TLS server in this process with the gateway's certificate that allows TLS 1.0."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_gateway.cert, tls_gateway.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(10)
            try:
                context.wrap_socket(sock, server_side=True).close()
            except (OSError, ssl.SSLError):
                sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


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
    with handshake(tls_gateway.port, client(tls_gateway.ca)) as s:
        assert s.version() == "TLSv1.3"
        s.sendall(request_bytes("GET", "/healthz", "localhost", close=True))
        reply = _read_reply(s, bytearray())
    assert reply.status == 200 and reply.json()["status"] == "ok"
    assert reply.headers["strict-transport-security"].startswith("max-age=")


def test_a_tls12_client_is_served_with_a_forward_secret_aead_suite(tls_gateway):
    with handshake(tls_gateway.port, client(tls_gateway.ca, ssl.TLSVersion.TLSv1_2)) as s:
        name, protocol, _ = s.cipher()
        assert protocol == "TLSv1.2"
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name


@pytest.mark.parametrize(("version", "name"), [("TLSv1_1", "TLSv1.1"), ("TLSv1", "TLSv1")])
def test_tls11_and_tls10_clients_are_refused_in_the_handshake(
    tls_gateway, permissive_port, version, name
):
    old = client(tls_gateway.ca, getattr(ssl.TLSVersion, version))
    with handshake(permissive_port, old) as s:  # control: this client does speak `version`
        assert s.version() == name
    with pytest.raises(ssl.SSLError):  # the gateway's alert, or its closing the connection
        handshake(tls_gateway.port, old).close()
    # Refused in the handshake, not by a gateway gone: a modern client is still served.
    with handshake(tls_gateway.port, client(tls_gateway.ca)) as s:
        assert s.version() == "TLSv1.3"
