"""Shared fixtures: real PostgreSQL and RabbitMQ, a private deployment per test session.

Every database, role and virtual host a session creates carries its deployment name
("t" + random hex) and is removed at the end; nothing else on the servers is touched. The
session registers itself first (devtools/sessions.py), so that what a crashed session left
is swept at the start of the next one, and a concurrently running session's is not. The run
directory `.run/test-<deployment>/` loses its private keys at the end, and is removed
unless the session failed (its process logs are kept then, and the path is printed).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from unittest import mock

import pytest

from ontrackio.core import config
from ontrackio.devtools import infra, sessions
from ontrackio.devtools.dnsserver import LoopbackDNS
from ontrackio.devtools.kmsemulator import KmsEmulator
from ontrackio.devtools.smtpserver import SmtpServer
from ontrackio.devtools.stack import ROOT, Stack
from tests.helpers import CallerChannel

SOCKET_DIR = Path("/var/run/postgresql")

# Settings for the system under test: fast retries, no deletion grace, small pools.
TEST_ENV = {
    "ONTRACK_DELETION_GRACE_SECONDS": "0",
    "ONTRACK_EVENT_RETRY_BASE_MS": "50",
    "ONTRACK_EVENT_MAX_ATTEMPTS": "3",
    "ONTRACK_OUTBOX_SWEEP_SECONDS": "2",
    "ONTRACK_POOL_MAX_PER_PROCESS": "3",
    "ONTRACK_TENANT_CACHE_SECONDS": "0.5",
    "ONTRACK_GRPC_WORKERS": "8",
    "ONTRACK_AUDIT_ANCHOR_SECONDS": "1",
    # Tenant keys: a disabled key must show within seconds, a re-enabled one recover fast.
    "ONTRACK_DATA_KEY_CACHE_SECONDS": "2",
    "ONTRACK_DATA_KEY_RETRY_SECONDS": "0.5",
    "ONTRACK_REENCRYPT_ROWS_PER_SECOND": "300",
    # Local sign-in's mail outbox: an SMTP outage is retried within seconds, not minutes.
    "ONTRACK_MAIL_RETRY_BASE_SECONDS": "0.5",
    "ONTRACK_MAIL_RETRY_MAX_SECONDS": "2",
    "ONTRACK_MAIL_MAX_ATTEMPTS": "10",
    "ONTRACK_MAIL_POLL_SECONDS": "0.5",
    # OIDC sign-in (sso/oidc): the in-process provider speaks plain http on loopback, and an
    # unknown signing key refetches the key set at once (the refetch interval has its own
    # tests, tests/integration/test_oidc_client.py).
    "ONTRACK_OIDC_ALLOW_LOOPBACK_HTTP": "true",
    "ONTRACK_OIDC_JWKS_MIN_REFETCH_SECONDS": "0",
    # SAML: the browser test's IdP (devtools/samlidp.py serve) is plain http on loopback;
    # every other host must still be https.
    "ONTRACK_SAML_ALLOW_LOOPBACK_HTTP": "true",
}


def unique(prefix: str = "t") -> str:
    """A unique, valid tenant slug."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def infrastructure():
    try:
        found = infra.find()
    except infra.InfraMissing as exc:
        pytest.exit(str(exc), returncode=1)  # a missing server fails the run, never skips
    yield found
    found.close()


_interrupted = False


def pytest_keyboard_interrupt(excinfo):
    global _interrupted
    _interrupted = True


def _say(config: pytest.Config, line: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


@pytest.fixture(scope="session")
def harness_session(infrastructure, request) -> sessions.Session:
    """This session's registered deployment, claimed after sweeping what dead sessions
    left; at the end its keys are removed, and its run directory unless the session failed
    or was interrupted."""
    runs = ROOT / ".run"
    swept = sessions.sweep(infrastructure, runs)
    if swept:
        _say(request.config, f"swept leftovers of crashed test sessions: {', '.join(swept)}")
    claimed = sessions.Session.claim(runs)
    yield claimed
    keep = _interrupted or request.session.testsfailed > 0
    claimed.end(keep_logs=keep)
    if keep:
        _say(request.config, f"process logs kept in {claimed.run_dir}")


@pytest.fixture(scope="session")
def deployment(harness_session) -> str:
    return harness_session.deployment


@pytest.fixture(scope="session")
def amqp_url(infrastructure, deployment):
    """The deployment's own broker account: a virtual host and a user named after it, with
    a random password and rights on that virtual host only (removed at the end)."""
    try:
        broker = infra.DeploymentBroker.create(infrastructure, deployment)
    except infra.BrokerSetupFailed as exc:
        pytest.exit(str(exc), returncode=1)  # never a silent fallback to another vhost
    yield broker.url
    broker.delete()


@pytest.fixture(scope="session")
def kms():
    """The KMS the system under test uses: moto's server behind a proxy that refuses as
    AWS does (devtools/kmsemulator.py), with a platform key. Test stacks run outside
    development mode, where the local key provider is refused. The AWS_* variables it
    needs are set in os.environ for the session (in-process code and the CLI use boto3)."""
    with KmsEmulator() as emulator, mock.patch.dict(os.environ, emulator.env()):
        yield emulator


@pytest.fixture(scope="session")
def smtp():
    """The SMTP server the system under test mails to: aiosmtpd in this process, keeping
    every message (devtools/smtpserver.py; ``refuse`` / ``accept`` to simulate an outage)."""
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="session")
def dns_server():
    """A real DNS server on loopback (devtools/dnsserver.py) that the stack's identity
    processes check domain challenges against; tests set its records."""
    with LoopbackDNS() as server:
        yield server


@pytest.fixture(scope="session")
def stack(infrastructure, harness_session, amqp_url, kms, smtp, dns_server):
    """The deployment's process set (not started); drops its databases at the end."""
    deployment, run_dir = harness_session.deployment, harness_session.run_dir
    env = dict(
        TEST_ENV,
        ONTRACK_OTEL_EXPORTER=f"file:{run_dir / 'spans.jsonl'}",
        **kms.env(),
        **smtp.env(),
        **dns_server.env(),
    )
    # Placement: besides "main", the same server reached another way (its local socket) as
    # a second cluster, and a cluster nobody listens on, to see failures reported.
    clusters = {
        "main": infrastructure.pg_dsn,
        "broken": "postgresql://postgres@127.0.0.1:9/postgres",
    }
    if SOCKET_DIR.joinpath(".s.PGSQL.5432").exists() and "127.0.0.1:5432" in infrastructure.pg_dsn:
        clusters["socket"] = f"postgresql://postgres@/postgres?host={SOCKET_DIR}"
    env["ONTRACK_PG_CLUSTERS"] = json.dumps(clusters)
    env["ONTRACK_PG_CLUSTER_REGIONS"] = json.dumps(dict.fromkeys(clusters, "eu-central-1"))
    s = Stack(deployment, infrastructure.pg_dsn, amqp_url, run_dir, extra_env=env)
    yield s
    s.stop()
    s.drop_databases()


@pytest.fixture(scope="session")
def settings(stack) -> config.Settings:
    """In-process settings pointing at the same deployment as the stack. The stack's
    ONTRACK_* variables are set in os.environ for the session (in-process code and the CLI
    read them there) and os.environ is restored as it was at the end."""
    env = {k: v for k, v in stack.env().items() if k.startswith("ONTRACK_")}
    env["ONTRACK_OTEL_EXPORTER"] = "none"  # the test process exports nothing
    with mock.patch.dict(os.environ, env):
        yield config.load()


@pytest.fixture(scope="session")
def oidc_provider():
    """A real OpenID Connect provider on loopback for the session (devtools/oidcprovider.py:
    authlib's authorization server; Google-, Entra- and generic-shaped clients)."""
    from ontrackio.devtools.oidcprovider import OidcProvider

    with OidcProvider() as provider:
        yield provider


@pytest.fixture(scope="session")
def system(stack, settings):
    """The whole system, running."""
    stack.start(gateway=(ROOT / "services" / "gateway" / "main.py").exists())
    stack.wait_ready()
    yield stack


def _test_identity(method: str) -> str:
    """The identity a test plays for `method`: the CLI for token, allowlist, key, domain
    and collaborator administration and sessions (only the gateway and the CLI may),
    operator tooling else."""
    cli_services = (
        "/ontrackio.identity.v1.AccessService/",
        "/ontrackio.identity.v1.KeyService/",
        "/ontrackio.identity.v1.SessionService/",
        "/ontrackio.identity.v1.DomainService/",
        "/ontrackio.identity.v1.CollaboratorService/",
    )
    return "cli" if method.startswith(cli_services) else "operator"


@pytest.fixture(scope="session")
def channels(system):
    """Mutual-TLS channels to every api, presenting the certificate of the identity a test
    plays for each method (`_test_identity`); `system.channel(service, identity)` for others."""
    chans = {
        s: CallerChannel({i: system.channel(s, i) for i in ("operator", "cli")}, _test_identity)
        for s in ("identity", "inventory", "privacy", "evidence")
    }
    yield chans
    for c in chans.values():
        c.close()


@pytest.fixture(scope="session")
def run_dir(stack) -> Path:
    return stack.run_dir
