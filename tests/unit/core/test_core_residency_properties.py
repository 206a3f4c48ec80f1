"""Properties of the residency rules (core/residency.py).

Differential: connection strings and broker URLs built from known parts (hosts of every
kind, several of them, key=value and URL spellings, percent-encoding, TLS options) get the
verdict an independent reading of the rule gives from those parts; the broker parts are
what kombu itself reads back. Hostile text (arbitrary DSN and URL text, odd Unicode, NUL,
lone surrogates) only ever raises ConfigError, in one line without the password, and what
it accepts outside development mode is, read by libpq's and kombu's own parsers, encrypted
or local.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import quote

import psycopg
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kombu.utils.url import parse_url
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from ontrackio.core import config, residency
from ontrackio.core.config import ConfigError
from tests.unit.core.strategies import PROPERTY, TEXT_ATOMS

PASSWORD = "pw-never-shown-4711"
ALLOWED = ("eu-central-1", "eu-west-1")
REGIONS = [*ALLOWED, "us-east-1", "ap-southeast-2"]

BASE = config.load(
    development=False,
    allowed_regions=ALLOWED,
    tenant_role_secret="role-secret-x",
    token_hash_key="hash-key-x",
    tls_ca_file="ca.pem",
    tls_cert_file="c.pem",
    tls_key_file="k.pem",
    amqp_url=f"amqp://deploy:{PASSWORD}@127.0.0.1/vh",
)


def with_(development: bool, **update) -> config.Settings:
    """BASE with `update` as is: nothing validated, so that check() sees any value."""
    return BASE.model_copy(update={"development": development, **update})


def verdict(settings: config.Settings) -> str | None:
    """None if check() accepts, else the setting its message names. Any other exception
    fails the property; so does a message of several lines or one showing the password."""
    try:
        residency.check(settings, {})
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert PASSWORD not in message, message
        assert message.startswith("ONTRACK_"), message
        return message.split(":", 1)[0]
    return None


# -- PostgreSQL: a differential over known parts ---------------------------------------------

LOOPBACK = ["127.0.0.1", "127.3.4.5", "::1", "localhost", "LOCALHOST"]
SOCKETS = ["/var/run/postgresql", "/tmp"]
REMOTE = ["10.1.2.3", "db.internal.example", "2001:db8::1", "192.0.2.7"]


@st.composite
def pg_host(draw) -> tuple[str, bool, str | None]:
    """A host, whether it is local, and the region its name tells."""
    kind = draw(st.sampled_from(["loopback", "socket", "remote", "rds"]))
    if kind == "rds":
        region = draw(st.sampled_from(REGIONS))
        name = draw(st.sampled_from(["db", "us-east-1", "eu-west-1"]))  # the user's label
        return f"{name}.c9akciq32.{region}.rds.amazonaws.com", False, region
    pool = {"loopback": LOOPBACK, "socket": SOCKETS, "remote": REMOTE}[kind]
    return draw(st.sampled_from(pool)), kind != "remote", None


password_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))


def kv_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def pg_clusters(draw):
    """A connection string, and its parts: hosts and addresses (each with whether it is
    local and the region its name tells) and sslmode."""
    hosts = draw(st.lists(pg_host(), max_size=3))
    sslmode = draw(
        st.sampled_from([None, "disable", "prefer", "require", "verify-ca", "verify-full"])
    )
    # libpq connects to hostaddr (a numeric address) where one is given, not to the host.
    hostaddr = draw(st.sampled_from([None, "127.0.0.1", "::1", "10.1.2.3"]))
    if hostaddr:
        hosts = [*hosts, (hostaddr, hostaddr != "10.1.2.3", None)]
    secret = PASSWORD + draw(password_text)
    host_list = ",".join(h for h, _, _ in hosts[: len(hosts) - bool(hostaddr)])
    if draw(st.booleans()):  # key=value
        parts = [f"password={kv_quote(secret)}", "dbname=postgres"]
        if host_list:
            parts.append(f"host={kv_quote(host_list)}")
        if hostaddr:
            parts.append(f"hostaddr={hostaddr}")
        if sslmode:
            parts.append(f"sslmode={sslmode}")
        dsn = " ".join(draw(st.permutations(parts)))
    else:  # a URL, the hosts in its query (sockets and IPv6 cannot stand in the authority)
        query = [f"host={quote(host_list, safe='')}"] if host_list else []
        query += [f"hostaddr={quote(hostaddr)}"] if hostaddr else []
        query += [f"sslmode={sslmode}"] if sslmode else []
        dsn = f"postgresql://admin:{quote(secret, safe='')}@/postgres"
        dsn += "?" + "&".join(query) if query else ""
    return dsn, hosts, sslmode


def expected_pg(hosts, sslmode, declared: str, development: bool) -> str | None:
    if declared not in ALLOWED:
        return "ONTRACK_PG_CLUSTER_REGIONS"
    if any(told is not None and told != declared for _, _, told in hosts):
        return "ONTRACK_PG_CLUSTERS"
    if not development and sslmode != "verify-full" and not all(local for _, local, _ in hosts):
        return "ONTRACK_PG_CLUSTERS"
    return None


@PROPERTY
@given(pg_clusters(), st.sampled_from(REGIONS), st.booleans())
@example(
    (
        f"host=127.0.0.1,db.internal.example password={PASSWORD}",
        [("127.0.0.1", True, None), ("db.internal.example", False, None)],
        None,
    ),
    "eu-central-1",
    False,
)
def test_a_cluster_gets_the_verdict_its_parts_give(cluster, declared, development):
    dsn, hosts, sslmode = cluster
    settings = with_(
        development,
        pg_clusters={"main": SecretStr(dsn)},
        pg_cluster_regions={"main": declared},
    )
    assert verdict(settings) == expected_pg(hosts, sslmode, declared, development)


# -- the broker: a differential over known parts, read back by kombu -------------------------

MQ = "b-1234abcd-56ef-1.mq.{}.amazonaws.com"


@st.composite
def broker_url(draw):
    """A broker URL and its parts: host (as kombu reads it), local, told region, TLS."""
    kind = draw(st.sampled_from(["loopback", "none", "remote", "mq"]))
    told = None
    if kind == "mq":
        told = draw(st.sampled_from(REGIONS))
        host = MQ.format(told)
    elif kind == "none":
        host = ""
    else:
        host = draw(
            st.sampled_from(
                ["127.0.0.1", "localhost", "::1"]
                if kind == "loopback"
                else ["10.1.2.3", "broker.internal.example", "2001:db8::1"]
            )
        )
    if ":" in host:
        netloc_host = f"[{host}]"
    elif host and draw(st.booleans()):  # kombu percent-decodes the host
        netloc_host = "".join(f"%{b:02X}" for b in host.encode())
    else:
        netloc_host = host
    scheme = draw(st.sampled_from(["amqp", "amqps", "pyamqp"]))
    cert_reqs = draw(st.sampled_from([None, "CERT_NONE", "CERT_REQUIRED", "optional", "required"]))
    user = quote(draw(password_text), safe="")
    secret = quote(PASSWORD + draw(password_text), safe="")
    url = f"{scheme}://{user}:{secret}@{netloc_host}/vh"
    url += f"?ssl_cert_reqs={cert_reqs}" if cert_reqs else ""
    # The ground truth is what kombu reads: the same host, the same transport.
    read = parse_url(url)
    assert (read["hostname"] or "", read["transport"]) == (host.lower(), scheme)
    verified = scheme == "amqps" and cert_reqs in (None, "CERT_REQUIRED", "required")
    return url, kind in ("loopback", "none"), told, verified


def expected_broker(urls, declared: str, development: bool) -> str | None:
    if declared not in ALLOWED:
        return "ONTRACK_AMQP_REGION"
    for _, local, told, verified in urls:
        if told is not None and told != declared:
            return "ONTRACK_AMQP_URL"
        if not (development or local or verified):
            return "ONTRACK_AMQP_URL"
    return None


@PROPERTY
@given(st.lists(broker_url(), min_size=1, max_size=3), st.sampled_from(REGIONS), st.booleans())
def test_broker_urls_get_the_verdict_their_parts_give(urls, declared, development):
    settings = with_(
        development,
        amqp_url=SecretStr(";".join(u for u, *_ in urls)),
        amqp_region=declared,
    )
    assert verdict(settings) == expected_broker(urls, declared, development)


# -- hostile text: only ConfigError, and what is accepted is local or encrypted ---------------

DSN_ATOMS = [
    "postgresql://", "postgres://", "host=", "hostaddr=", "sslmode=verify-full",
    "sslmode=disable", "service=x", "?host=", "&sslmode=verify-full", "127.0.0.1", "::1", "[::1]",
    "localhost", "/var/run/postgresql", "db.internal.example", ".rds.amazonaws.com",
    "us-east-1", ".eu-central-1", "@", ":", "/", ",", "'", "\\", " ", "=", "%2c", "%2d", PASSWORD,
]  # fmt: skip
URL_ATOMS = [
    "amqp://", "amqps://", "pyamqp://", ";", "@", ":", "/", "[", "]", "?", "&", "#",
    "ssl_cert_reqs=CERT_NONE", "127.0.0.1", "::1", "localhost", "broker.internal.example",
    "b-1.mq.", "us-east-1", "eu-central-1", ".amazonaws.com", "%2e", "%3a", "%5b", PASSWORD,
]  # fmt: skip
KMS_ATOMS = [
    "https://", "http://", "kms.", "kms-fips.", "vpce-1.kms.", "us-east-1", "eu-central-1",
    ".amazonaws.com", ".vpce", "127.0.0.1", ":4566", "/", "%", "arn:aws:kms:",
    ":123456789012:key/", "abcd",
]  # fmt: skip


def text_of(atoms):
    return st.lists(
        st.one_of(
            st.sampled_from(atoms),
            st.sampled_from(TEXT_ATOMS),
            st.text(st.characters(codec=None), max_size=4),
        ),
        max_size=12,
    ).map("".join)


def libpq_local_or_verified(dsn: str) -> bool:
    """An independent reading of the PostgreSQL transport rule (no environment)."""
    params = conninfo_to_dict(dsn)  # raises if libpq cannot read it
    if params.get("sslmode") == "verify-full":
        return True
    if "service" in params:
        return False
    for entry in [*params.get("host", "").split(","), *params.get("hostaddr", "").split(",")]:
        entry = entry.strip().lower().removesuffix(".")
        if entry and not entry.startswith("/") and entry != "localhost":
            try:
                if not ipaddress.ip_address(entry).is_loopback:
                    return False
            except ValueError:
                return False
    return True


def kombu_local_or_verified(amqp_url: str) -> bool:
    """The broker transport rule, each URL read by kombu's own parser."""
    for url in amqp_url.split(";"):
        if "://" not in url:  # kombu: a bare host name, plaintext amqp
            return False
        try:
            read = parse_url(url)
        except Exception:  # kombu cannot read it: it refuses to connect, nothing is sent
            continue
        host = (read["hostname"] or "").lower()
        ssl = read.get("ssl") if isinstance(read.get("ssl"), dict) else {}
        verified = read["transport"] == "amqps" and ssl.get("ssl_cert_reqs", 2) == 2
        if not (verified or not host or host == "localhost" or _is_loopback_ip(host)):
            return False
    return True


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@PROPERTY
@given(text_of(DSN_ATOMS), st.booleans())
@example(f"host=127.0.0.1 password={PASSWORD}\x00 host=db.internal.example", False)
@example(f"postgresql://admin:p w{PASSWORD}@h/db", False)
@example("host=\udc80", False)
def test_any_connection_string_text_is_refused_only_with_a_config_error(dsn, development):
    seen = verdict(with_(development, pg_clusters={"main": SecretStr(dsn)}))
    if seen is None and not development:
        assert "\x00" not in dsn and libpq_local_or_verified(dsn)


@PROPERTY
@given(text_of(URL_ATOMS), st.booleans())
@example(f"amqps://u:{PASSWORD}@127.0.0.1/;broker.internal.example", False)
@example("\u3000amqps://broker.internal.example/", False)
@example("amqp://%2e", False)  # kombu's host is ".", not this machine
@example("amqp://%20/", False)
def test_any_broker_url_text_is_refused_only_with_a_config_error(url, development):
    seen = verdict(with_(development, amqp_url=SecretStr(url)))
    if seen is None and not development:
        assert kombu_local_or_verified(url)


@PROPERTY
@given(text_of(KMS_ATOMS), text_of(KMS_ATOMS), text_of(REGIONS), st.booleans())
def test_any_kms_setting_text_is_refused_only_with_a_config_error(
    key, endpoint, region, development
):
    verdict(
        with_(
            development,
            kms_provider="aws",
            kms_key_id=key,
            kms_endpoint_url=endpoint,
            kms_region=region,
        )
    )


@PROPERTY
@given(
    st.dictionaries(text_of(["main", "eu2"]), text_of(REGIONS), max_size=3),
    text_of(REGIONS),
)
def test_any_region_text_is_refused_only_with_a_config_error(cluster_regions, amqp_region):
    verdict(with_(True, pg_cluster_regions=cluster_regions, amqp_region=amqp_region))


def test_the_oracles_read_what_they_promise():
    """The independent readings above fail on what they must (else a property passes
    vacuously)."""
    assert not libpq_local_or_verified("host=db.internal.example")
    assert libpq_local_or_verified("host=/tmp,127.0.0.1")
    assert not kombu_local_or_verified("amqp://u:p@127.0.0.1/;amqp://u:p@10.1.2.3/")
    assert kombu_local_or_verified("amqps://u:p@10.1.2.3/")
    with pytest.raises(psycopg.ProgrammingError):
        libpq_local_or_verified("garbage")
