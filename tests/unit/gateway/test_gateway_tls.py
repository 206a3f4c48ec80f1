import ssl

import pytest
import uvicorn
from starlette.responses import PlainTextResponse

from ontrackio.devtools import pki
from ontrackio.gateway.tls import (
    harden,
    server_ssl_context,
    uvicorn_ssl_context_factory,
    uvicorn_ssl_kwargs,
)


@pytest.fixture
def cert_pair(tmp_path):
    """A certificate and key for `localhost`, made in-process (cryptography, through the
    development PKI's own issuer): nothing outside Python is needed, so nothing is skipped."""
    cert, key = pki.issue(pki.new_authority("gateway TLS test CA"), "test", "localhost")
    paths = tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(cert)
    paths[1].write_bytes(key)
    return paths


def test_harden_sets_tls12_floor():
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all("ECDHE" in n and ("GCM" in n or "CHACHA20" in n) for n in tls12)


def test_server_context_loads_cert(cert_pair):
    context = server_ssl_context(*cert_pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_uvicorn_kwargs_only_with_both_files(cert_pair):
    assert uvicorn_ssl_kwargs(None, None) == {}
    assert uvicorn_ssl_kwargs(cert_pair[0], None) == {}
    kwargs = uvicorn_ssl_kwargs(*cert_pair)
    assert kwargs["ssl_certfile"] == str(cert_pair[0])
    assert kwargs["ssl_context_factory"] is uvicorn_ssl_context_factory


def test_uvicorn_config_builds_a_hardened_context(cert_pair):
    config = uvicorn.Config(PlainTextResponse("x"), **uvicorn_ssl_kwargs(*cert_pair))
    config.load()
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
