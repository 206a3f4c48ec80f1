"""Configuration: ONTRACK_* environment, TOML file, file:// secrets, one-line errors."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from ontrackio.core import config
from ontrackio.core.config import ConfigError

SECRET = "s3cr3t-value-never-shown"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No ONTRACK_* variable of the caller's shell leaks into a test; the cache starts empty.
    Tests run in development mode (the default secrets allowed) unless they say otherwise."""
    for name in list(os.environ):
        if name.startswith("ONTRACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ONTRACK_DEVELOPMENT", "true")
    config.settings.cache_clear()
    yield
    config.settings.cache_clear()


def error_for(monkeypatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        config.load()
    message = str(info.value)
    assert "\n" not in message
    return message


# -- defaults and environment ------------------------------------------------------------


def test_defaults_without_any_source():
    s = config.load()
    assert s.deployment == "ot"
    assert s.pg_control_cluster == "main" and list(s.pg_clusters) == ["main"]
    assert s.region == "eu-central-1" and s.region in s.allowed_regions
    assert (s.pool_max_per_process, s.pool_max_per_tenant) == (3, 2)
    assert s.otel_exporter == "none" and s.log_level == "INFO"


def test_environment_variables_with_prefix_override_defaults(monkeypatch):
    monkeypatch.setenv("ONTRACK_DEPLOYMENT", "t1a2")
    monkeypatch.setenv("ONTRACK_POOL_MAX_PER_PROCESS", "9")
    monkeypatch.setenv(
        "ONTRACK_PG_CLUSTERS", '{"main": "postgresql://a/b", "eu2": "postgresql://c/d"}'
    )
    monkeypatch.setenv("ONTRACK_ALLOWED_REGIONS", '["eu-central-1", "eu-west-1"]')
    monkeypatch.setenv("ONTRACK_REGION", "eu-west-1")
    s = config.load()
    assert s.deployment == "t1a2"
    assert s.pool_max_per_process == 9
    assert set(s.pg_clusters) == {"main", "eu2"}
    assert s.region == "eu-west-1"


def test_unprefixed_variables_are_ignored(monkeypatch):
    monkeypatch.setenv("DEPLOYMENT", "other")
    monkeypatch.setenv("POOL_MAX_PER_PROCESS", "9")
    s = config.load()
    assert s.deployment == "ot" and s.pool_max_per_process == 3


def test_keyword_overrides_win_over_environment(monkeypatch):
    monkeypatch.setenv("ONTRACK_DEPLOYMENT", "fromenv")
    assert config.load(deployment="fromkw").deployment == "fromkw"


def test_settings_are_frozen():
    s = config.load()
    with pytest.raises(ValidationError):
        s.deployment = "other"  # type: ignore[misc]


def test_grpc_target_uses_each_services_port(monkeypatch):
    monkeypatch.setenv("ONTRACK_GRPC_HOST", "10.0.0.5")
    monkeypatch.setenv("ONTRACK_PRIVACY_GRPC_PORT", "6000")
    assert config.load().grpc_target("privacy") == "10.0.0.5:6000"


@pytest.mark.parametrize("exporter", ["none", "console", "file:spans.jsonl"])
def test_otel_exporter_accepts_documented_forms(monkeypatch, exporter):
    monkeypatch.setenv("ONTRACK_OTEL_EXPORTER", exporter)
    assert config.load().otel_exporter == exporter


# -- invalid values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("ONTRACK_POOL_MAX_PER_PROCESS", "0"),
        ("ONTRACK_POOL_MAX_PER_PROCESS", "51"),
        ("ONTRACK_POOL_MAX_PER_TENANT", "0"),
        ("ONTRACK_POOL_IDLE_SECONDS", "0"),
        ("ONTRACK_GRPC_WORKERS", "many"),
        ("ONTRACK_EVENT_MAX_ATTEMPTS", "0"),
        ("ONTRACK_DEPLOYMENT", "Bad"),
        ("ONTRACK_DEPLOYMENT", "1ot"),
        ("ONTRACK_DEPLOYMENT", "ot_x"),
        ("ONTRACK_DEPLOYMENT", "abcdefghijklm"),
        ("ONTRACK_OTEL_EXPORTER", "bogus"),
        ("ONTRACK_OTEL_EXPORTER", "file:"),
        ("ONTRACK_LOG_LEVEL", "debug"),
    ],
)
def test_invalid_value_is_a_one_line_error_naming_the_variable(monkeypatch, name, value):
    message = error_for(monkeypatch, **{name: value})
    assert message.startswith(f"{name}:")


def test_longest_valid_deployment_is_accepted(monkeypatch):
    monkeypatch.setenv("ONTRACK_DEPLOYMENT", "a" * 12)
    assert config.load().deployment == "a" * 12


def test_unknown_control_cluster_is_refused(monkeypatch):
    message = error_for(monkeypatch, ONTRACK_PG_CONTROL_CLUSTER="nowhere")
    assert message.startswith("ONTRACK_PG_CONTROL_CLUSTER:") and "nowhere" in message


def test_empty_cluster_table_is_refused(monkeypatch):
    message = error_for(monkeypatch, ONTRACK_PG_CLUSTERS="{}")
    assert message.startswith("ONTRACK_PG_CLUSTERS:")


def test_region_outside_allowed_regions_is_refused(monkeypatch):
    message = error_for(monkeypatch, ONTRACK_REGION="us-east-1")
    assert "region" in message and "us-east-1" in message


def test_model_level_error_is_prefixed_with_the_variable_at_fault(monkeypatch):
    message = error_for(monkeypatch, ONTRACK_PG_CONTROL_CLUSTER="nowhere")
    assert message.startswith("ONTRACK_PG_CONTROL_CLUSTER:")


@pytest.mark.parametrize("name", ["ONTRACK_PG_CLUSTERS", "ONTRACK_ALLOWED_REGIONS"])
def test_non_json_value_of_a_structured_setting_is_a_config_error(monkeypatch, name):
    message = error_for(monkeypatch, **{name: "eu-central-1"})
    assert message.startswith(f"{name}:")


def test_deployment_with_trailing_newline_is_refused(monkeypatch):
    error_for(monkeypatch, ONTRACK_DEPLOYMENT="ot\n")


# -- secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["tenant_role_secret", "token_hash_key", "amqp_url"])
def test_secret_is_usable_but_hidden_from_repr_and_str(monkeypatch, field):
    monkeypatch.setenv(f"ONTRACK_{field.upper()}", SECRET)
    s = config.load()
    assert getattr(s, field).get_secret_value() == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s)


def test_password_in_cluster_dsn_is_hidden_from_repr(monkeypatch):
    monkeypatch.setenv(
        "ONTRACK_PG_CLUSTERS", f'{{"main": "postgresql://admin:{SECRET}@db/postgres"}}'
    )
    assert SECRET not in repr(config.load())


def test_error_never_echoes_the_input_value(monkeypatch):
    message = error_for(monkeypatch, ONTRACK_POOL_MAX_PER_PROCESS=SECRET)
    assert SECRET not in message


def test_error_in_another_setting_does_not_show_secrets(monkeypatch):
    message = error_for(
        monkeypatch,
        ONTRACK_TENANT_ROLE_SECRET=SECRET,
        ONTRACK_TOKEN_HASH_KEY=SECRET,
        ONTRACK_AMQP_URL=f"amqp://u:{SECRET}@h/",
        ONTRACK_REGION="nowhere-1",
    )
    assert SECRET not in message


def test_secret_of_wrong_type_in_file_is_refused_without_echo(monkeypatch, tmp_path):
    path = tmp_path / "ontrack.toml"
    path.write_text("tenant_role_secret = 987654321\n")
    message = error_for(monkeypatch, ONTRACK_CONFIG_FILE=str(path))
    assert message.startswith("ONTRACK_TENANT_ROLE_SECRET:")
    assert "987654321" not in message


@pytest.mark.parametrize("field", ["tenant_role_secret", "token_hash_key", "amqp_url"])
def test_secret_read_through_file_indirection_without_trailing_newline(
    monkeypatch, tmp_path, field
):
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    monkeypatch.setenv(f"ONTRACK_{field.upper()}", f"file://{path}")
    assert getattr(config.load(), field).get_secret_value() == SECRET


def test_missing_secret_file_names_the_setting_not_the_content(monkeypatch, tmp_path):
    message = error_for(monkeypatch, ONTRACK_TOKEN_HASH_KEY=f"file://{tmp_path / 'absent'}")
    assert message.startswith("ONTRACK_TOKEN_HASH_KEY:")
    assert "cannot read secret file" in message


def test_file_indirection_applies_only_to_secrets(monkeypatch):
    monkeypatch.setenv("ONTRACK_GRPC_HOST", "file:///etc/hostname")
    assert config.load().grpc_host == "file:///etc/hostname"


# -- TOML file ---------------------------------------------------------------------------


def test_toml_file_sets_values(monkeypatch, tmp_path):
    path = tmp_path / "ontrack.toml"
    path.write_text(
        'deployment = "fromfile"\npool_max_per_tenant = 3\n'
        '[pg_clusters]\nmain = "postgresql://x/y"\n'
    )
    monkeypatch.setenv("ONTRACK_CONFIG_FILE", str(path))
    s = config.load()
    assert (s.deployment, s.pool_max_per_tenant) == ("fromfile", 3)
    assert s.pg_dsn("main") == "postgresql://x/y"


def test_environment_wins_over_toml_file(monkeypatch, tmp_path):
    path = tmp_path / "ontrack.toml"
    path.write_text('deployment = "fromfile"\n')
    monkeypatch.setenv("ONTRACK_CONFIG_FILE", str(path))
    monkeypatch.setenv("ONTRACK_DEPLOYMENT", "fromenv")
    assert config.load().deployment == "fromenv"


def test_secret_in_toml_file_may_use_file_indirection(monkeypatch, tmp_path):
    (tmp_path / "key").write_text(SECRET)
    path = tmp_path / "ontrack.toml"
    path.write_text(f'token_hash_key = "file://{tmp_path / "key"}"\n')
    monkeypatch.setenv("ONTRACK_CONFIG_FILE", str(path))
    assert config.load().token_hash_key.get_secret_value() == SECRET


def test_missing_toml_file_is_a_config_error(monkeypatch, tmp_path):
    message = error_for(monkeypatch, ONTRACK_CONFIG_FILE=str(tmp_path / "absent.toml"))
    assert message.startswith("ONTRACK_CONFIG_FILE:") and "cannot read" in message


def test_invalid_toml_is_a_config_error(monkeypatch, tmp_path):
    path = tmp_path / "ontrack.toml"
    path.write_text("deployment = = broken\n")
    message = error_for(monkeypatch, ONTRACK_CONFIG_FILE=str(path))
    assert message.startswith("ONTRACK_CONFIG_FILE:") and "not valid TOML" in message


def test_invalid_value_in_toml_file_names_the_setting(monkeypatch, tmp_path):
    path = tmp_path / "ontrack.toml"
    path.write_text("pool_max_per_process = 0\n")
    message = error_for(monkeypatch, ONTRACK_CONFIG_FILE=str(path))
    assert message.startswith("ONTRACK_POOL_MAX_PER_PROCESS:")


# -- process start -----------------------------------------------------------------------


def test_settings_are_loaded_once_per_process(monkeypatch):
    first = config.settings()
    monkeypatch.setenv("ONTRACK_DEPLOYMENT", "changed")
    assert config.settings() is first


def test_settings_or_exit_returns_valid_settings():
    assert config.settings_or_exit().deployment == "ot"


def test_settings_or_exit_exits_2_with_one_line_on_stderr(monkeypatch, capsys):
    monkeypatch.setenv("ONTRACK_DEPLOYMENT", "Bad")
    monkeypatch.setenv("ONTRACK_TENANT_ROLE_SECRET", SECRET)
    with pytest.raises(SystemExit) as info:
        config.settings_or_exit()
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("configuration error: ONTRACK_DEPLOYMENT:")
    assert SECRET not in err


# -- development defaults --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(config.DEVELOPMENT_DEFAULTS))
def test_development_default_secret_refused_outside_development_mode(monkeypatch, name):
    monkeypatch.delenv("ONTRACK_DEVELOPMENT")
    for other in config.DEVELOPMENT_DEFAULTS:
        if other != name:
            monkeypatch.setenv(f"ONTRACK_{other.upper()}", SECRET)
    message = error_for(monkeypatch)
    assert message.startswith(f"ONTRACK_{name.upper()}: the development default is refused")
    assert config.DEVELOPMENT_DEFAULTS[name] not in message


def test_real_secrets_start_outside_development_mode(monkeypatch):
    monkeypatch.delenv("ONTRACK_DEVELOPMENT")
    monkeypatch.setenv("ONTRACK_AMQP_URL", f"amqp://t1:{SECRET}@127.0.0.1/t1")  # not guest
    for name in config.DEVELOPMENT_DEFAULTS:
        monkeypatch.setenv(f"ONTRACK_{name.upper()}", SECRET + name)
    for name in config.TLS_SETTINGS:  # mutual TLS is required too (test_core_tls_settings.py)
        monkeypatch.setenv(f"ONTRACK_{name.upper()}", f"/etc/ontrack/{name}.pem")
    s = config.load()
    assert not s.development
    assert s.token_hash_key.get_secret_value() == SECRET + "token_hash_key"


def test_development_mode_allows_the_defaults():
    s = config.load()
    assert s.development
    assert (
        s.tenant_role_secret.get_secret_value() == config.DEVELOPMENT_DEFAULTS["tenant_role_secret"]
    )
