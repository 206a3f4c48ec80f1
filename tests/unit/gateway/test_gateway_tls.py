import shutil
import ssl
import subprocess

import pytest

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
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_harden_sets_tls12_floor():
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    names = {c["name"] for c in context.get_ciphers()}
    assert not any("CBC" in n or n.startswith("AES") and "GCM" not in n for n in names if "TLS_" not in n)


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
    import uvicorn

    config = uvicorn.Config("x:y", **uvicorn_ssl_kwargs(*cert_pair))
    config.load_ssl = None  # type: ignore[attr-defined]  # not a uvicorn API; keep the test honest below
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    default.load_cert_chain(*map(str, cert_pair))
    context = uvicorn_ssl_context_factory(config, lambda: default)
    assert context is default
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
