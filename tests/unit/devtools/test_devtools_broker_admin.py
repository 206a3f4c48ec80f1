"""How a deployment's broker account is made: the local rabbitmqctl for a broker on this
machine, the broker container's own rabbitmqctl (testcontainers' exec) for one started in
Docker, so that no RabbitMQ needs to be installed there. A failure of either stops the
caller; nothing ever falls back to the broker's `/` virtual host. No Docker and no broker
here: a stand-in container runs the exec'd command on this machine against a fake
rabbitmqctl that records its arguments and standard input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from ontrackio.devtools import infra

ROOT_URL = "amqp://ontrack:adminpw@127.0.0.1:32999/"


def fake_rabbitmqctl(directory: Path, fail_on: str | None = None) -> Path:
    """A rabbitmqctl in `directory` appending {args, stdin} to calls.jsonl; it fails
    (exit 70, an error line) on the command `fail_on`, or on every command for "*"."""
    log = directory / "calls.jsonl"
    script = directory / "rabbitmqctl"
    script.write_text(
        "#!/bin/sh\n"
        'stdin=""\n'
        '[ -t 0 ] || stdin="$(cat)"\n'
        f'python3 -c \'import json,sys; print(json.dumps({{"args": sys.argv[2:], "stdin": sys.argv[1]}}))\' "$stdin" "$@" >> {log}\n'  # noqa: E501
        f'if [ "{fail_on}" = "*" ] || [ "$1" = "{fail_on}" ]; then\n'
        '  echo "Error: refused_by_test" >&2; exit 70\n'
        "fi\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


class LocalExecContainer:
    """Stands in for a started testcontainers container: `exec` runs the command here,
    with the exec's environment, PATH pointing at the fake rabbitmqctl only, and records
    what each exec was given."""

    def __init__(self, bin_dir: Path):
        self.bin_dir, self.execs = bin_dir, []

    def exec(self, config):
        self.execs.append(config)
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", **(config.environment or {})}
        r = subprocess.run(config.command, env=env, capture_output=True, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout + r.stderr


@pytest.fixture
def no_local_rabbitmqctl(monkeypatch, tmp_path):
    """PATH without any rabbitmqctl (only what a shell and python3 need)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}:/usr/bin:/bin")
    assert infra.shutil.which("rabbitmqctl") is None


def test_a_broker_testcontainers_started_is_administered_inside_its_container(
    tmp_path, no_local_rabbitmqctl
):
    container_bin = tmp_path / "container-bin"
    container_bin.mkdir()
    log = fake_rabbitmqctl(container_bin)
    container = LocalExecContainer(container_bin)
    found = infra.Infra("postgresql://unused", ROOT_URL, (container,), broker_container=container)

    broker = infra.DeploymentBroker.create(found, "t0badcafe")

    made = calls(log)
    assert [c["args"] for c in made] == [
        ["add_vhost", "t0badcafe"],
        ["add_user", "t0badcafe"],
        ["set_permissions", "-p", "t0badcafe", "t0badcafe", ".*", ".*", ".*"],
    ]
    password = made[1]["stdin"]
    assert len(password) >= 24
    assert broker.url == f"amqp://t0badcafe:{password}@127.0.0.1:32999/t0badcafe"
    # The password reached rabbitmqctl's stdin through the exec's environment, never argv.
    assert all(password not in " ".join(e.command) for e in container.execs)

    broker.delete()
    assert [c["args"] for c in calls(log)[3:]] == [
        ["delete_user", "t0badcafe"],
        ["delete_vhost", "t0badcafe"],
    ]


def test_a_failing_rabbitmqctl_in_the_container_fails_and_removes_what_it_made(
    tmp_path, no_local_rabbitmqctl
):
    container_bin = tmp_path / "container-bin"
    container_bin.mkdir()
    log = fake_rabbitmqctl(container_bin, fail_on="set_permissions")
    container = LocalExecContainer(container_bin)
    found = infra.Infra("postgresql://unused", ROOT_URL, (container,), broker_container=container)

    with pytest.raises(infra.BrokerSetupFailed) as info:
        infra.DeploymentBroker.create(found, "t0badcafe")

    assert str(info.value) == "rabbitmqctl set_permissions failed: Error: refused_by_test"
    assert [c["args"][0] for c in calls(log)] == [
        "add_vhost",
        "add_user",
        "set_permissions",
        "delete_user",
        "delete_vhost",
    ]


def test_a_local_rabbitmqctl_that_fails_stops_the_setup_without_a_url(tmp_path, monkeypatch):
    log = fake_rabbitmqctl(tmp_path, fail_on="*")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = infra.Infra("postgresql://unused", ROOT_URL)

    with pytest.raises(infra.BrokerSetupFailed, match=r"^rabbitmqctl add_vhost failed: Error"):
        infra.DeploymentBroker.create(found, "t0badcafe")

    assert calls(log)[0]["args"] == ["add_vhost", "t0badcafe"]  # the local one was asked


def test_only_a_started_broker_container_selects_the_container_s_rabbitmqctl():
    assert infra.Infra("pg", ROOT_URL).ctl() is infra.local_ctl
    container = object()
    ctl = infra.Infra("pg", ROOT_URL, (object(), container), broker_container=container).ctl()
    assert isinstance(ctl, infra.ContainerCtl) and ctl.container is container


def test_find_starts_containers_only_when_nothing_is_reachable_and_docker_runs(monkeypatch):
    started = infra.Infra("pg-in-docker", ROOT_URL, ("pg", "mq"), broker_container="mq")
    monkeypatch.setattr(infra, "_containers", lambda: started)
    monkeypatch.delenv("ONTRACK_TEST_PG_DSN", raising=False)
    monkeypatch.setattr(infra, "docker_available", lambda: True)

    monkeypatch.setattr(infra, "reachable", lambda url, timeout=1.0: True)
    assert infra.find().broker_container is None  # local servers win

    monkeypatch.setattr(infra, "reachable", lambda url, timeout=1.0: False)
    assert infra.find() is started

    monkeypatch.setattr(infra, "docker_available", lambda: False)
    with pytest.raises(infra.InfraMissing, match="PostgreSQL and RabbitMQ not reachable"):
        infra.find()
