import shutil
import ssl
import subprocess

import pytest
import uvicorn
from starlette.responses import PlainTextResponse

from ontrackio.gateway.tls import (
    harden,
    server_ssl_context,
    uvicorn_ssl_context_factory,
    uvicorn_ssl_kwargs,
)


@pytest.fixture
def cert_pair(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


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
