"""TLS settings: required outside development mode; "{identity}" picks each process's own
files; development mode defaults to the deployment's development PKI; unreadable files are
one-line configuration errors naming the setting."""

from __future__ import annotations

import os
import stat

import pytest

from ontrackio.core import config, tls
from ontrackio.core.config import ConfigError
from ontrackio.devtools import pki


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("ONTRACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ONTRACK_TENANT_ROLE_SECRET", "s1")
    monkeypatch.setenv("ONTRACK_TOKEN_HASH_KEY", "s2")
    monkeypatch.setenv("ONTRACK_AMQP_URL", "amqp://deployment-user:pw@127.0.0.1:5672/vh")


@pytest.mark.parametrize("missing", config.TLS_SETTINGS)
def test_each_tls_setting_is_required_outside_development_mode(monkeypatch, missing):
    for name in config.TLS_SETTINGS:
        if name != missing:
            monkeypatch.setenv(f"ONTRACK_{name.upper()}", "/x.pem")
    with pytest.raises(ConfigError) as info:
        config.load()
    assert str(info.value).startswith(
        f"ONTRACK_{missing.upper()}: required outside development mode"
    )


def test_identity_placeholder_picks_each_process_file(monkeypatch):
    monkeypatch.setenv("ONTRACK_TLS_CA_FILE", "/tls/ca.pem")
    monkeypatch.setenv("ONTRACK_TLS_CERT_FILE", "/tls/{identity}.pem")
    monkeypatch.setenv("ONTRACK_TLS_KEY_FILE", "/tls/{identity}.key")
    ca, cert, key = map(str, config.load().tls_paths("inventory"))
    assert (ca, cert, key) == ("/tls/ca.pem", "/tls/inventory.pem", "/tls/inventory.key")


def test_development_mode_defaults_to_the_development_pki(monkeypatch):
    monkeypatch.setenv("ONTRACK_DEVELOPMENT", "true")
    ca, cert, key = config.load(deployment="devx").tls_paths("gateway")
    base = config.ROOT / ".run" / "devx" / "pki"
    assert (ca, cert, key) == (base / "ca.pem", base / "gateway.pem", base / "gateway-key.pem")


def test_unreadable_or_non_pem_files_are_one_line_errors(monkeypatch, tmp_path):
    pki.ensure(tmp_path, "dep")
    monkeypatch.setenv("ONTRACK_TLS_CA_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("ONTRACK_TLS_CERT_FILE", str(tmp_path / "{identity}.pem"))
    monkeypatch.setenv("ONTRACK_TLS_KEY_FILE", str(tmp_path / "{identity}-key.pem"))
    settings = config.load()
    material = tls.load(settings, "cli")
    assert material.cert.startswith(b"-----BEGIN CERTIFICATE")
    with pytest.raises(ConfigError) as info:
        tls.load(settings, "nobody")
    assert str(info.value).startswith("ONTRACK_TLS_CERT_FILE: cannot read")
    (tmp_path / "junk.pem").write_bytes(b"not a certificate")
    with pytest.raises(ConfigError, match="ONTRACK_TLS_CERT_FILE: .* is not PEM"):
        tls.load(config.load(tls_cert_file=str(tmp_path / "junk.pem")), "cli")


def test_the_development_pki_is_kept_then_remade_for_another_deployment(tmp_path):
    pki.ensure(tmp_path, "dep")
    ca = (tmp_path / "ca.pem").read_bytes()
    assert stat.S_IMODE((tmp_path / "cli-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    pki.ensure(tmp_path, "dep")
    assert (tmp_path / "ca.pem").read_bytes() == ca
    pki.ensure(tmp_path, "other")
    assert (tmp_path / "ca.pem").read_bytes() != ca


@pytest.mark.parametrize(
    "module", ["ontrackio.inventory.api", "ontrackio.identity.worker", "ontrackio.cli.main"]
)
def test_a_process_without_tls_settings_refuses_to_start_outside_development_mode(module):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ONTRACK_")}
    env.update(
        ONTRACK_TENANT_ROLE_SECRET="s1",
        ONTRACK_TOKEN_HASH_KEY="s2",
        ONTRACK_AMQP_URL="amqp://deployment-user:pw@127.0.0.1:5672/vh",
    )
    args = ["tenant", "list"] if module.endswith("cli.main") else []
    r = subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    message = lines[-1].removeprefix("Error: ")  # click's prefix for the CLI
    assert message.startswith("configuration error: ONTRACK_TLS_CA_FILE: required outside")
    assert "Traceback" not in r.stderr
