"""Residency (core/residency.py): every endpoint a process uses declares an allowed region,
host names that tell a region agree with the declaration, and outside development mode
nothing leaves the machine in plaintext. Each refusal is one line naming the setting and
never shows a password (the DSNs and URLs here carry one)."""

from __future__ import annotations

import json

import pytest

from ontrackio.core import config, residency
from ontrackio.core.config import ConfigError

PASSWORD = "pw-never-shown-4711"
DSN = f"postgresql://admin:{PASSWORD}@127.0.0.1:5432/postgres"
AMQP = f"amqp://deploy:{PASSWORD}@127.0.0.1:5672/vh"
KEY = "arn:aws:kms:eu-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TWO_REGIONS = ("eu-central-1", "eu-west-1")
# Outside development mode these must be set; the TLS files are not read at load.
PRODUCTION = {
    "tenant_role_secret": "role-secret-x",
    "token_hash_key": "hash-key-x",
    "tls_ca_file": "ca.pem",
    "tls_cert_file": "{identity}.pem",
    "tls_key_file": "{identity}-key.pem",
}


pytestmark = pytest.mark.usefixtures("clean_config")


def settings(development: bool = True, **changes) -> config.Settings:
    values = {
        **PRODUCTION,
        "development": development,
        "pg_clusters": {"main": DSN},
        "amqp_url": AMQP,
        **changes,
    }
    return config.load(**values)


def refusal(environ=None, **changes) -> str:
    """The one-line message `check` refuses these settings with."""
    loaded = settings(**changes)
    with pytest.raises(ConfigError) as info:
        residency.check(loaded, environ or {})
    message = str(info.value)
    assert "\n" not in message and PASSWORD not in message
    return message


def accepted(environ=None, **changes) -> None:
    residency.check(settings(**changes), environ or {})


def test_the_default_settings_are_accepted():
    residency.check(config.load(development=True))


# -- PostgreSQL clusters declare an allowed region -----------------------------------------


def test_a_cluster_in_a_region_that_is_not_allowed_is_refused():
    message = refusal(pg_cluster_regions={"main": "us-east-1"})
    assert message == (
        "ONTRACK_PG_CLUSTER_REGIONS: cluster 'main': 'us-east-1' is not an allowed region; "
        "allowed: 'eu-central-1'"
    )


def test_a_cluster_in_another_allowed_region_is_accepted():
    accepted(allowed_regions=TWO_REGIONS, pg_cluster_regions={"main": "eu-west-1"})


def test_a_cluster_that_declares_no_region_is_refused():
    message = refusal(
        pg_clusters={"main": DSN, "eu2": DSN}, pg_cluster_regions={"main": "eu-central-1"}
    )
    assert message.startswith("ONTRACK_PG_CLUSTER_REGIONS: cluster 'eu2' declares no region")


def test_a_region_declared_for_a_cluster_that_does_not_exist_is_refused():
    message = refusal(pg_cluster_regions={"main": "eu-central-1", "mian": "eu-central-1"})
    assert message == ("ONTRACK_PG_CLUSTER_REGIONS: 'mian' is not a cluster of ONTRACK_PG_CLUSTERS")


def test_every_cluster_declaring_an_allowed_region_is_accepted():
    accepted(
        allowed_regions=TWO_REGIONS,
        pg_clusters={"main": DSN, "eu2": DSN},
        pg_cluster_regions={"main": "eu-central-1", "eu2": "eu-west-1"},
    )


# -- the broker ------------------------------------------------------------------------------


def test_a_broker_in_a_region_that_is_not_allowed_is_refused():
    message = refusal(amqp_region="us-east-1")
    assert message.startswith("ONTRACK_AMQP_REGION: the broker URL: 'us-east-1' is not")


def test_a_broker_in_an_allowed_region_is_accepted():
    accepted(allowed_regions=TWO_REGIONS, amqp_region="eu-west-1")


# -- AWS KMS -----------------------------------------------------------------------------


def test_the_local_key_provider_has_no_region_to_check():
    accepted(kms_provider="local", kms_region="us-east-1", kms_key_id="anything")


def test_aws_kms_without_a_key_is_refused():
    message = refusal(kms_provider="aws")
    assert message.startswith("ONTRACK_KMS_KEY_ID: required with ONTRACK_KMS_PROVIDER=aws")


@pytest.mark.parametrize(
    "key",
    [
        "1234abcd-12ab-34cd-56ef-1234567890ab",  # a key id, not an ARN
        "arn:aws:kms:eu-central-1:123456789012:alias/platform",  # an alias
        "arn:aws:kms:eu-central-1:12345:key/abcd",  # not an account
        "arn:aws:s3:eu-central-1:123456789012:key/abcd",  # not KMS
        "arn:aws:kms:Eu-Central-1:123456789012:key/abcd",
        KEY + "\n",
    ],
)
def test_a_kms_key_that_is_not_a_key_arn_is_refused(key):
    message = refusal(kms_provider="aws", kms_key_id=key)
    assert message == "ONTRACK_KMS_KEY_ID: not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"


def test_a_kms_key_in_a_region_that_is_not_allowed_is_refused():
    message = refusal(kms_provider="aws", kms_key_id=KEY.replace("eu-central-1", "us-east-1"))
    assert message.startswith("ONTRACK_KMS_KEY_ID: the platform key: 'us-east-1' is not")


@pytest.mark.parametrize(
    "key", [KEY, "arn:aws:kms:eu-central-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"]
)
def test_a_kms_key_in_an_allowed_region_is_accepted(key):
    accepted(kms_provider="aws", kms_key_id=key)


def test_a_kms_region_that_is_not_allowed_is_refused():
    message = refusal(kms_provider="aws", kms_key_id=KEY, kms_region="us-east-1")
    assert message.startswith("ONTRACK_KMS_REGION: the KMS endpoint: 'us-east-1' is not")


def test_a_kms_region_that_is_allowed_is_accepted():
    accepted(
        allowed_regions=TWO_REGIONS, kms_provider="aws", kms_key_id=KEY, kms_region="eu-west-1"
    )


# -- host names that tell their region -------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "region"),
    [
        ("mydb.c9akciq32.eu-central-1.rds.amazonaws.com", "eu-central-1"),
        ("prod.cluster-ro-c9akciq32.us-east-1.rds.amazonaws.com", "us-east-1"),
        ("proxy.proxy-c9akciq32.us-west-2.rds.amazonaws.com", "us-west-2"),
        ("mydb.c9akciq32.rds.cn-north-1.amazonaws.com.cn", "cn-north-1"),
        # An instance name is the user's: only the label before .rds. tells the region.
        ("us-east-1.c9akciq32.eu-central-1.rds.amazonaws.com", "eu-central-1"),
        ("b-1234abcd-56ef-78ab-90cd-1234567890ab-1.mq.us-east-1.amazonaws.com", "us-east-1"),
        ("b-1234abcd-56ef-78ab-90cd-1234567890ab.mq.eu-central-1.on.aws", "eu-central-1"),
        ("kms.us-east-1.amazonaws.com", "us-east-1"),
        ("kms-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
        ("kms.eu-central-1.api.aws", "eu-central-1"),
        ("vpce-0123abcd-4567efgh.kms.us-west-2.vpce.amazonaws.com", "us-west-2"),
        (
            "vpce-0123abcd-4567efgh-eu-central-1a.kms.eu-central-1.vpce.amazonaws.com",
            "eu-central-1",
        ),
        ("ip-10-0-0-1.us-east-2.compute.internal", "us-east-2"),
    ],
)
def test_a_host_name_that_tells_its_region(host, region):
    assert residency.region_of_host(host) == region


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "::1",
        "localhost",
        "db.internal.example",
        "us-east-1.example.com",
        "kms.us-east-1.amazonaws.com.evil.example",
        "kms.amazonaws.com",
        "rds.amazonaws.com",
        "",
    ],
)
def test_a_host_name_that_tells_nothing_relies_on_the_declaration(host):
    assert residency.region_of_host(host) is None


RDS_US = "db.c9akciq32.us-east-1.rds.amazonaws.com"
RDS_EU = "db.c9akciq32.eu-central-1.rds.amazonaws.com"


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://admin:{PASSWORD}@{RDS_US}:5432/postgres",
        f"postgresql://admin:{PASSWORD}@{RDS_US.upper()}./postgres",  # case, trailing dot
        f"postgresql://admin:{PASSWORD}@db.c9akciq32.us%2deast-1.rds.amazonaws.com/postgres",
        f"host={RDS_EU},{RDS_US} port=5432,5432 user=admin password={PASSWORD}",
        f"postgresql://admin:{PASSWORD}@/postgres?host={RDS_US}",
    ],
)
def test_a_database_host_in_another_region_than_declared_is_refused(dsn):
    message = refusal(allowed_regions=("eu-central-1", "us-east-1"), pg_clusters={"main": dsn})
    assert message == (
        "ONTRACK_PG_CLUSTERS: cluster 'main': its host name is in 'us-east-1', not in "
        "'eu-central-1' as ONTRACK_PG_CLUSTER_REGIONS declares"
    )
    assert "rds.amazonaws.com" not in message.lower()


def test_libpqs_pghost_counts_where_the_connection_string_names_no_host():
    dsn = f"postgresql://admin:{PASSWORD}@/postgres"
    message = refusal({"PGHOST": RDS_US}, pg_clusters={"main": dsn})
    assert message.startswith("ONTRACK_PG_CLUSTERS: cluster 'main': its host name is in")
    accepted({"PGHOST": RDS_US}, pg_clusters={"main": f"host={RDS_EU} password={PASSWORD}"})


def test_a_database_host_in_the_declared_region_is_accepted():
    dsn = f"postgresql://admin:{PASSWORD}@{RDS_EU}/postgres?sslmode=verify-full"
    accepted(development=False, pg_clusters={"main": dsn})


@pytest.mark.parametrize(
    "url",
    [
        f"amqps://deploy:{PASSWORD}@b-1234.mq.us-east-1.amazonaws.com:5671/vh",
        f"amqps://deploy:{PASSWORD}@b-1234.mq.us-east-1.on.aws:5671/vh",
        f"amqps://deploy:{PASSWORD}@b-1234.mq.us%2Deast-1.amazonaws.com/vh",  # kombu decodes it
    ],
)
def test_a_broker_host_in_another_region_than_declared_is_refused(url):
    message = refusal(amqp_url=url)
    assert message == (
        "ONTRACK_AMQP_URL: the broker URL: its host name is in 'us-east-1', not in "
        "'eu-central-1' as ONTRACK_AMQP_REGION declares"
    )


def test_each_failover_broker_url_is_checked_and_named_by_its_place():
    eu = f"amqps://deploy:{PASSWORD}@b-1.mq.eu-central-1.amazonaws.com/vh"
    us = f"amqps://deploy:{PASSWORD}@b-2.mq.us-east-1.amazonaws.com/vh"
    message = refusal(amqp_url=f"{eu};{us}")
    assert message.startswith("ONTRACK_AMQP_URL: broker URL 2 of 2: its host name is in")
    accepted(development=False, amqp_url=f"{eu};{eu.replace('b-1', 'b-3')}")


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://kms.us-east-1.amazonaws.com",
        "https://kms-fips.us-east-1.amazonaws.com/",
        "https://vpce-0123abcd-4567efgh.kms.us-east-1.vpce.amazonaws.com",
    ],
)
def test_a_kms_endpoint_in_another_region_than_the_key_is_refused(endpoint):
    message = refusal(kms_provider="aws", kms_key_id=KEY, kms_endpoint_url=endpoint)
    assert message == (
        "ONTRACK_KMS_ENDPOINT_URL: the KMS endpoint: its host name is in 'us-east-1', not in "
        "'eu-central-1' as ONTRACK_KMS_KEY_ID declares"
    )


def test_a_kms_endpoint_is_compared_with_the_kms_region_where_one_is_set():
    message = refusal(
        allowed_regions=TWO_REGIONS,
        kms_provider="aws",
        kms_key_id=KEY,
        kms_region="eu-west-1",
        kms_endpoint_url="https://kms.eu-central-1.amazonaws.com",
    )
    assert message.endswith("not in 'eu-west-1' as ONTRACK_KMS_REGION declares")


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://kms.eu-central-1.amazonaws.com",
        "https://vpce-0123abcd-4567efgh.kms.eu-central-1.vpce.amazonaws.com",
        "https://kms.internal.example:8443",
    ],
)
def test_a_kms_endpoint_in_the_keys_region_is_accepted(endpoint):
    accepted(development=False, kms_provider="aws", kms_key_id=KEY, kms_endpoint_url=endpoint)


@pytest.mark.parametrize("endpoint", ["kms.eu-central-1.amazonaws.com", "ftp://kms/", "https://"])
def test_a_kms_endpoint_that_is_not_an_http_url_is_refused(endpoint):
    message = refusal(kms_provider="aws", kms_key_id=KEY, kms_endpoint_url=endpoint)
    assert message == "ONTRACK_KMS_ENDPOINT_URL: not an http(s) URL"


@pytest.mark.parametrize(
    "changes",
    [
        {"pg_clusters": {"main": f"postgresql://admin:{PASSWORD}@\uff4b\uff4d\uff53.example/x"}},
        {"amqp_url": f"amqps://deploy:{PASSWORD}@b-1.mq.us-east-\u0661.amazonaws.com/vh"},
        {"amqp_url": f"amqps://deploy:{PASSWORD}@b-1.mq.us-east-1%00.amazonaws.com/vh"},
        {
            "kms_provider": "aws",
            "kms_key_id": KEY,
            "kms_endpoint_url": "https://\uff4b\uff4d\uff53.us-east-1.amazonaws.com",
        },
    ],
)
def test_a_host_name_that_is_not_printable_ascii_is_refused(changes):
    """Look-alike and decoded spellings never slip past the host-name patterns."""
    assert "a host name must be printable ASCII" in refusal(**changes)


# -- production transport --------------------------------------------------------------------

REMOTE = "db.internal.example"


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://admin:{PASSWORD}@{REMOTE}/postgres",
        f"postgresql://admin:{PASSWORD}@{REMOTE}/postgres?sslmode=require",
        f"postgresql://admin:{PASSWORD}@{REMOTE}/postgres?sslmode=verify-ca",
        f"host={REMOTE} password={PASSWORD} sslmode=verify-full sslmode=prefer",  # last wins
        f"host=127.0.0.1,{REMOTE} password={PASSWORD}",  # one of several hosts leaves
        f"host=localhost hostaddr=10.1.2.3 password={PASSWORD}",  # the address is used
        f"host={REMOTE} hostaddr=127.0.0.1 password={PASSWORD}",
        f"service=platform password={PASSWORD}",  # a service file names hosts not read here
        f"postgresql://admin:{PASSWORD}@[2001:db8::1]/postgres",
    ],
)
def test_plaintext_postgresql_off_the_machine_is_refused_outside_development_mode(dsn):
    message = refusal(development=False, pg_clusters={"main": dsn})
    assert message == (
        "ONTRACK_PG_CLUSTERS: cluster 'main': sslmode=verify-full is required outside "
        "development mode (only loopback and local sockets may be reached in plaintext)"
    )
    assert REMOTE not in message
    accepted(development=True, pg_clusters={"main": dsn})  # development mode: allowed


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://admin:{PASSWORD}@127.0.0.1:5432/postgres",
        f"postgresql://admin:{PASSWORD}@127.8.9.10/postgres",
        f"postgresql://admin:{PASSWORD}@[::1]/postgres",
        f"postgresql://admin:{PASSWORD}@LocalHost/postgres",
        f"postgresql://admin:{PASSWORD}@/postgres?host=/var/run/postgresql",
        f"postgresql://admin:{PASSWORD}@/postgres",  # no host: the local socket
        f"host=/tmp,127.0.0.1 port=5432,6432 password={PASSWORD}",
        f"host='' dbname=postgres password={PASSWORD}",  # empty: the socket
        f"host=localhost hostaddr=127.0.0.1 password={PASSWORD}",
        f"postgresql://admin:{PASSWORD}@{REMOTE}/postgres?sslmode=verify-full",
        f"host={REMOTE},db2.internal.example sslmode=verify-full password={PASSWORD}",
    ],
)
def test_loopback_sockets_and_verify_full_are_accepted_outside_development_mode(dsn):
    accepted(development=False, pg_clusters={"main": dsn})


@pytest.mark.parametrize(
    ("environ", "verdict"),
    [
        ({"PGHOST": REMOTE}, False),
        ({"PGHOSTADDR": "10.1.2.3"}, False),
        ({"PGSERVICE": "platform"}, False),
        ({"PGHOST": "/var/run/postgresql"}, True),
        ({"PGHOST": "127.0.0.1"}, True),
    ],
)
def test_libpqs_variables_decide_the_route_of_a_string_without_host(environ, verdict):
    changes = {
        "development": False,
        "pg_clusters": {"main": f"dbname=postgres password={PASSWORD}"},
    }
    if verdict:
        accepted(environ, **changes)
    else:
        assert "sslmode=verify-full is required" in refusal(environ, **changes)


@pytest.mark.parametrize(
    "url",
    [
        f"amqp://deploy:{PASSWORD}@broker.internal.example:5672/vh",
        f"pyamqp://deploy:{PASSWORD}@broker.internal.example/vh",
        f"amqp://deploy:{PASSWORD}@broker.internal.example/vh?ssl=1",  # amqps:// it must say
        f"amqps://deploy:{PASSWORD}@broker.internal.example/vh?ssl_cert_reqs=CERT_NONE",
        f"amqps://deploy:{PASSWORD}@broker.internal.example/vh?ssl_cert_reqs=optional",
        f"amqp://deploy:{PASSWORD}@10.1.2.3/vh",
    ],
)
def test_a_broker_off_the_machine_without_verified_tls_is_refused_outside_development(url):
    message = refusal(development=False, amqp_url=url)
    assert message == (
        "ONTRACK_AMQP_URL: the broker URL: amqps:// with the broker's certificate verified is "
        "required outside development mode (only loopback and local sockets may be reached "
        "in plaintext)"
    )
    accepted(development=True, amqp_url=url)


def test_one_plaintext_failover_url_off_the_machine_is_refused():
    tls = f"amqps://deploy:{PASSWORD}@broker.internal.example/vh"
    plain = f"amqp://deploy:{PASSWORD}@broker2.internal.example/vh"
    message = refusal(development=False, amqp_url=f"{tls};{plain}")
    assert message.startswith("ONTRACK_AMQP_URL: broker URL 2 of 2: amqps://")


@pytest.mark.parametrize(
    "url",
    [
        AMQP,
        f"amqp://deploy:{PASSWORD}@[::1]:5672/vh",
        f"amqp://deploy:{PASSWORD}@localhost/vh",
        f"amqp://deploy:{PASSWORD}@/vh",  # no host: kombu's localhost
        f"amqps://deploy:{PASSWORD}@broker.internal.example:5671/vh",
        f"amqps://deploy:{PASSWORD}@broker.internal.example/vh?ssl_cert_reqs=CERT_REQUIRED",
    ],
)
def test_a_loopback_or_verified_tls_broker_is_accepted_outside_development_mode(url):
    accepted(development=False, amqp_url=url)


@pytest.mark.parametrize(
    ("endpoint", "verdict"),
    [
        ("http://kms.eu-central-1.amazonaws.com", False),
        ("http://kms.internal.example:8080", False),
        ("http://127.0.0.1:4566", True),  # a local KMS emulator
        ("https://kms.eu-central-1.amazonaws.com", True),
    ],
)
def test_a_kms_endpoint_off_the_machine_needs_https_outside_development_mode(endpoint, verdict):
    changes = {
        "development": False,
        "kms_provider": "aws",
        "kms_key_id": KEY,
        "kms_endpoint_url": endpoint,
    }
    if verdict:
        accepted(**changes)
    else:
        assert refusal(**changes) == (
            "ONTRACK_KMS_ENDPOINT_URL: the KMS endpoint: https:// is required outside "
            "development mode (only loopback and local sockets may be reached in plaintext)"
        )


# -- malformed endpoints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://admin:p w{PASSWORD}@h/db",  # libpq's own message would quote this
        f"host=h password='{PASSWORD}",
        f"garbage{PASSWORD}",
        f"postgresql://admin:{PASSWORD}\udc80@h/db",
    ],
)
def test_a_connection_string_that_does_not_parse_is_refused_without_its_text(dsn):
    message = refusal(pg_clusters={"main": dsn})
    assert message == (
        "ONTRACK_PG_CLUSTERS: cluster 'main': not a valid PostgreSQL connection string"
    )


def test_a_connection_string_holding_a_nul_is_refused():
    """libpq would stop reading at the NUL: `host=127.0.0.1\\0 host=remote` is refused
    rather than read one way here and another at connect."""
    message = refusal(pg_clusters={"main": f"host=127.0.0.1 password={PASSWORD}\x00 host=x"})
    assert (
        message
        == "ONTRACK_PG_CLUSTERS: cluster 'main': the connection string holds a NUL character"
    )


@pytest.mark.parametrize(
    "url",
    [
        f"broker.internal.example:{PASSWORD}",  # a bare host: kombu's plaintext amqp
        f"amqps://deploy:{PASSWORD}@[::1/vh",
        f"amqps://deploy:{PASSWORD}@h:99999/vh",
        f"{AMQP};",
    ],
)
def test_a_broker_url_that_does_not_parse_is_refused_without_its_text(url):
    message = refusal(amqp_url=url)
    assert message.startswith("ONTRACK_AMQP_URL: ") and "is not a URL" in message


# -- every process checks at start -----------------------------------------------------------


def test_settings_or_exit_refuses_a_cluster_outside_the_allowed_regions(monkeypatch, capsys):
    monkeypatch.setenv("ONTRACK_DEVELOPMENT", "true")
    monkeypatch.setenv("ONTRACK_PG_CLUSTERS", json.dumps({"main": DSN}))
    monkeypatch.setenv("ONTRACK_PG_CLUSTER_REGIONS", '{"main": "us-east-1"}')
    with pytest.raises(SystemExit) as info:
        config.settings_or_exit()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and PASSWORD not in err
    assert err.startswith("configuration error: ONTRACK_PG_CLUSTER_REGIONS: cluster 'main'")


def test_settings_or_exit_passes_the_environment_to_the_check(monkeypatch, capsys):
    for name, value in {
        **{f"ONTRACK_{k.upper()}": v for k, v in PRODUCTION.items()},
        "ONTRACK_PG_CLUSTERS": json.dumps({"main": f"dbname=postgres password={PASSWORD}"}),
        "ONTRACK_AMQP_URL": AMQP,
        "PGHOST": REMOTE,
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        config.settings_or_exit()
    assert "ONTRACK_PG_CLUSTERS: cluster 'main': sslmode" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "https://kms.us-east-1.amazonaws.com\\@kms.eu-central-1.amazonaws.com/",
        "https://user@kms.eu-central-1.amazonaws.com/",
        "https://kms.eu-central-1.amazonaws.com\\x/",
    ],
)
def test_a_kms_endpoint_with_a_user_part_or_a_backslash_is_refused(url):
    """urlsplit and urllib3 read such a URL's host differently (a bypass of the check)."""
    with pytest.raises(ConfigError, match="ONTRACK_KMS_ENDPOINT_URL"):
        residency.check(
            config.load(
                development=True,
                kms_provider="aws",
                kms_key_id="arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                kms_endpoint_url=url,
            ),
            {},
        )
