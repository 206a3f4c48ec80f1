"""Each test deployment gets a broker account of its own on the real RabbitMQ: a virtual
host and a user named after it, the user (random password) allowed on that vhost only;
both removed at the end. A failing or missing rabbitmqctl fails loudly, leaves nothing
behind and never falls back to another vhost."""

from __future__ import annotations

import os
import shutil
import stat
import uuid

import amqp.exceptions
import kombu
import pytest

from ontrackio.devtools import infra


def connects(url: str) -> bool:
    """True if `url` logs in; False if the broker refuses it (bad credentials, or no rights
    on the virtual host). Anything else (broker unreachable, a malformed URL) is raised: it
    must not pass for a refusal."""
    try:
        with kombu.Connection(url, connect_timeout=5) as conn:
            conn.connect()
            return True
    except (amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed):
        return False


def users_and_vhosts() -> tuple[str, str]:
    return infra.rabbitmqctl("list_users").stdout, infra.rabbitmqctl("list_vhosts").stdout


def test_a_deployment_user_reaches_its_own_vhost_only(infrastructure):
    name = "t" + uuid.uuid4().hex[:8]
    broker = infra.DeploymentBroker.create(infrastructure, name)
    try:
        assert (broker.user, broker.vhost) == (name, name)
        assert broker.url.startswith(f"amqp://{name}:") and broker.url.endswith(f"/{name}")
        assert "guest" not in broker.url
        assert connects(broker.url)
        other_vhost = broker.url.rsplit("/", 1)[0] + "/"
        assert not connects(other_vhost)  # no rights on the default vhost
        wrong_password = broker.url.replace(f"{name}:", f"{name}:x", 1)
        assert not connects(wrong_password)
    finally:
        broker.delete()
    users, vhosts = users_and_vhosts()
    assert name not in users and name not in vhosts
    assert not connects(broker.url)


@pytest.fixture
def failing_add_user(tmp_path, monkeypatch):
    """A rabbitmqctl on PATH that fails `add_user` and runs the real one otherwise."""
    real = shutil.which("rabbitmqctl")
    fake = tmp_path / "rabbitmqctl"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = add_user ]; then echo "Error: user_creation_refused_by_test" >&2; '
        "exit 70; fi\n"
        f'exec {real} "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_a_failing_rabbitmqctl_fails_with_its_message_and_leaves_nothing(
    infrastructure, failing_add_user
):
    name = "t" + uuid.uuid4().hex[:8]
    with pytest.raises(infra.BrokerSetupFailed) as info:
        infra.DeploymentBroker.create(infrastructure, name)
    assert str(info.value) == "rabbitmqctl add_user failed: Error: user_creation_refused_by_test"
    users, vhosts = users_and_vhosts()
    assert name not in users and name not in vhosts  # the vhost made first was removed


def test_no_rabbitmqctl_fails_with_what_to_install(infrastructure, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(infra.BrokerSetupFailed, match="rabbitmqctl not found"):
        infra.DeploymentBroker.create(infrastructure, "t" + uuid.uuid4().hex[:8])
