from datetime import UTC, datetime, timedelta
from ipaddress import ip_network

import pytest

from ontrackio.gateway.server import uvicorn_kwargs
from ontrackio.gateway.settings import GatewaySettings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("ONTRACK_GATEWAY_"):
            monkeypatch.delenv(name)


def test_defaults():
    settings = load_settings()
    assert settings.port == 8080
    assert settings.base_domain == "localhost"
    assert settings.trusted_proxies == []
    assert settings.max_json_depth == 32
    assert not settings.tls_enabled
    assert settings.security_txt() is None


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("ONTRACK_GATEWAY_PORT", "9000")
    monkeypatch.setenv("ONTRACK_GATEWAY_BASE_DOMAIN", "OnTrack.IO.")
    monkeypatch.setenv("ONTRACK_GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::/32")
    monkeypatch.setenv("ONTRACK_GATEWAY_SECURITY_TXT_CONTACT", "mailto:security@ontrack.io")
    settings = load_settings()
    assert settings.port == 9000
    assert settings.base_domain == "ontrack.io"
    assert settings.trusted_proxies == [ip_network("10.0.0.0/8"), ip_network("2001:db8::/32")]
    assert "Contact: mailto:security@ontrack.io" in settings.security_txt()


def test_json_list_form(monkeypatch):
    monkeypatch.setenv("ONTRACK_GATEWAY_TRUSTED_PROXIES", '["10.0.0.0/8"]')
    assert load_settings().trusted_proxies == [ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ONTRACK_GATEWAY_PORT", "http"),
        ("ONTRACK_GATEWAY_PORT", "70000"),
        ("ONTRACK_GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8,not-a-cidr"),
        ("ONTRACK_GATEWAY_BASE_DOMAIN", "bad domain"),
        ("ONTRACK_GATEWAY_MAX_JSON_DEPTH", "0"),
        ("ONTRACK_GATEWAY_RATE_LIMIT_IP_PER_SECOND", "-1"),
        ("ONTRACK_GATEWAY_TLS_CERT_FILE", "/nonexistent/cert.pem"),
        ("ONTRACK_GATEWAY_SECURITY_TXT_EXPIRES", "2001-01-01T00:00:00Z"),
    ],
)
def test_errors_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value)


def test_invalid_cidrs_are_all_named(monkeypatch):
    monkeypatch.setenv("ONTRACK_GATEWAY_TRUSTED_PROXIES", "x1, 10.0.0.0/8, x2")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "'x1'" in str(info.value) and "'x2'" in str(info.value)


def test_tls_files_come_in_pairs(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="tls_cert_file and tls_key_file"):
        load_settings(tls_cert_file=cert)


def test_bad_security_txt_contact_stops_start():
    with pytest.raises(SettingsError, match="ONTRACK_GATEWAY_SECURITY_TXT_CONTACT"):
        load_settings(security_txt_contact=["http://not-https.example"])
    with pytest.raises(SettingsError, match="ONTRACK_GATEWAY_SECURITY_TXT_POLICY"):
        load_settings(security_txt_contact=["mailto:a@b"], security_txt_policy="http://x")


def test_security_txt_expiry_rolls_when_unset():
    text = GatewaySettings(security_txt_contact=["mailto:a@b"]).security_txt()
    expires = datetime.strptime(text.split("Expires: ")[1].split("\n")[0], "%Y-%m-%dT%H:%M:%SZ")
    assert expires.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(days=170)


def test_uvicorn_kwargs_keep_the_peer_honest():
    kwargs = uvicorn_kwargs(load_settings())
    assert kwargs["proxy_headers"] is False
    assert kwargs["forwarded_allow_ips"] == ""
    assert kwargs["http"] == "h11"
    assert kwargs["port"] == 8080
    assert "ssl_certfile" not in kwargs


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
        ("10.0.0.0/8, ::ffff:0:0/96", "::ffff:0:0/96 (= 0.0.0.0/0)"),
        ("::ffff:0.0.0.0/96", "::ffff:0.0.0.0/96 (= 0.0.0.0/0)"),
        ("::fffe:0:0/95", "::fffe:0:0/95"),
        ("0.0.0.0/1, 128.0.0.0/1", "0.0.0.0/1, 128.0.0.0/1"),
        ("10.0.0.0/7", "10.0.0.0/7"),
        ("::/1", "::/1"),
        ("2000::/3", "2000::/3"),
        ("::/96", "::/96"),
        ("64:ff9b::/96", "64:ff9b::/96"),
        ("2002::/16", "2002::/16"),
        ('["2001::/32"]', "2001::/32"),
    ],
)
def test_catch_all_trusted_proxies_are_refused_in_one_line(monkeypatch, value, named):
    monkeypatch.setenv("ONTRACK_GATEWAY_TRUSTED_PROXIES", value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert f"ONTRACK_GATEWAY_TRUSTED_PROXIES: {named} would trust any client" in message


@pytest.mark.parametrize(
    "networks", [["0.0.0.0/0"], ["::ffff:0:0/96"], ["::/0", "10.0.0.0/8"]], ids=str
)
def test_catch_alls_are_refused_when_given_as_networks_too(networks):
    with pytest.raises(SettingsError, match="would trust any client"):
        load_settings(trusted_proxies=[ip_network(n) for n in networks])


@pytest.mark.parametrize(
    "value",
    ["10.0.0.0/8", "127.0.0.1, ::1", "2001:db8::/32, 2606:4700::/32", "172.16.0.0/12", "::1/128"],
)
def test_real_proxy_ranges_are_accepted(monkeypatch, value):
    monkeypatch.setenv("ONTRACK_GATEWAY_TRUSTED_PROXIES", value)
    assert load_settings().trusted_proxies


def test_metrics_allow_keeps_its_own_rules(monkeypatch):
    monkeypatch.setenv("ONTRACK_GATEWAY_METRICS_ALLOW", "127.0.0.0/8, ::1")
    assert load_settings().metrics_allow == [ip_network("127.0.0.0/8"), ip_network("::1/128")]


def test_several_errors_are_one_line_naming_each(monkeypatch):
    monkeypatch.setenv("ONTRACK_GATEWAY_PORT", "http")
    monkeypatch.setenv("ONTRACK_GATEWAY_TRUSTED_PROXIES", "::/0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert "ONTRACK_GATEWAY_PORT:" in message and "ONTRACK_GATEWAY_TRUSTED_PROXIES:" in message


def test_the_gateway_process_refuses_to_start_with_a_catch_all_proxy(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ONTRACK_")}
    env.update(
        ONTRACK_GATEWAY_TRUSTED_PROXIES="10.0.0.0/8, ::/0", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)
    )
    run = subprocess.run(
        [sys.executable, "-m", "ontrackio.gateway.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("configuration error: invalid gateway configuration: ")
    assert "ONTRACK_GATEWAY_TRUSTED_PROXIES: ::/0 would trust any client" in lines[0]
