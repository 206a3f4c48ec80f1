"""Residency: every endpoint a process uses lies in an allowed region, and outside
development mode none is reached in plaintext.

Pure rules over the settings: nothing is resolved, read or connected. ``check`` runs at the
start of every process (``config.settings_or_exit``: each service's api and worker, the
gateway, ``make run``; the CLI when it loads its settings) and raises ``ConfigError`` with one
line naming the setting at fault. Connection strings and broker URLs carry passwords: a
message names the cluster or the URL's place in the list, never their text or a host.

For each endpoint (``ENDPOINTS``: PostgreSQL clusters, the broker, AWS KMS):

- its declared region is allowed (``ONTRACK_ALLOWED_REGIONS``): every cluster of
  ``ONTRACK_PG_CLUSTERS`` declares one in ``ONTRACK_PG_CLUSTER_REGIONS`` (a region declared
  for a cluster that does not exist is refused too: a typo), the broker in
  ``ONTRACK_AMQP_REGION``; with ``ONTRACK_KMS_PROVIDER=aws`` the platform key's ARN
  (``ONTRACK_KMS_KEY_ID``, required) names its region, and ``ONTRACK_KMS_REGION`` (if set)
  is allowed too;
- where a host name itself tells its region (``HOST_REGIONS``: RDS, Amazon MQ, KMS and its
  VPC endpoints, EC2 private names), that region is the declared one. A host that tells
  nothing (an IP address, localhost, a private name) relies on the declaration;
- outside development mode its traffic is encrypted with the peer verified: PostgreSQL
  ``sslmode=verify-full`` (in the connection string itself), the broker ``amqps://``
  (certificate checks not turned off by ``ssl_cert_reqs``), a KMS endpoint URL ``https://``.
  Loopback stays allowed in plaintext (127.0.0.0/8, ::1, localhost; for PostgreSQL also a
  Unix socket: a host starting with ``/``, or none): that traffic never leaves the machine,
  as with a local PgBouncer or TLS sidecar. The test harness runs such stacks on 127.0.0.1.

PostgreSQL connection strings are read with libpq's own parser (URLs or ``key=value``,
several hosts ``host=a,b``, ``hostaddr``). Where a string names no host, libpq takes
``PGHOST`` / ``PGHOSTADDR`` from the environment (``environ``, handed in by the caller), else
the local socket; a service file (``service=``, ``PGSERVICE``) may name hosts this does not
read, so such a cluster counts as leaving the machine. Broker URLs are read as kombu reads
them (several, ``;``-separated, hosts percent-decoded).

Object storage has no setting yet (backups come later): its endpoint will be one more
function in ``ENDPOINTS``, and its host names (``s3.REGION.amazonaws.com``) one more
pattern in ``HOST_REGIONS``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ontrackio.core.config import ConfigError, Settings, broker_urls

# An AWS region name: eu-central-1, us-gov-west-1, cn-north-1, us-isob-east-1.
_REGION = r"(?P<region>[a-z]{2}(?:-[a-z]+)?-[a-z]+-[0-9]+)"
_AWS = r"amazonaws\.com(?:\.cn)?"

# Host names that tell their own region (lower case, no trailing dot).
HOST_REGIONS = tuple(
    re.compile(pattern)
    for pattern in (
        rf"(?:.+\.)?{_REGION}\.rds\.{_AWS}",  # RDS, Aurora, RDS Proxy
        rf".+\.rds\.{_REGION}\.amazonaws\.com\.cn",  # the same in China
        rf".+\.mq\.{_REGION}\.(?:{_AWS}|on\.aws)",  # Amazon MQ brokers (b-….mq.REGION…)
        rf"kms(?:-fips)?\.{_REGION}\.(?:{_AWS}|api\.aws)",  # KMS, FIPS and dual-stack
        rf".+\.kms(?:-fips)?\.{_REGION}\.vpce\.{_AWS}",  # KMS through a VPC endpoint
        rf".+\.{_REGION}\.compute\.internal",  # EC2 private names (a database on EC2)
    )
)

KEY_ARN_RE = re.compile(rf"arn:aws(?:-[a-z]+)*:kms:{_REGION}:[0-9]{{12}}:key/[A-Za-z0-9-]+\Z")
KEY_ARN_FORM = "arn:aws:kms:REGION:ACCOUNT:key/ID"
_HOST_TEXT = re.compile(r"[!-~]*\Z")  # printable ASCII, no space


@dataclass(frozen=True)
class Endpoint:
    """Something a process connects to, as the rules see it."""

    setting: str  # the setting that names it, e.g. "ONTRACK_PG_CLUSTERS"
    what: str  # how a message names it: "cluster 'main'", "broker URL 2 of 3"
    region_setting: str  # the setting its region is declared in
    region: str  # the declared region
    hosts: tuple[str, ...] = ()  # the host names it is reached at (normalised)
    local: bool = False  # every connection stays on this machine (loopback, Unix socket)
    encrypted: bool = True  # TLS with the peer's certificate verified
    needs: str = ""  # what `encrypted` asks of the setting, for the message


def region_of_host(host: str) -> str | None:
    """The region a (normalised) host name tells, or None if it tells nothing."""
    for pattern in HOST_REGIONS:
        found = pattern.fullmatch(host)
        if found:
            return found["region"]
    return None


def is_loopback(host: str) -> bool:
    """`host` (normalised) is this machine: localhost, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(raw: str, where: str) -> str:
    """`raw` as a host name to compare: stripped, lower case, without a trailing dot.
    Refused unless printable ASCII, so that no look-alike spelling escapes HOST_REGIONS."""
    host = raw.strip()
    if not _HOST_TEXT.match(host):
        raise ConfigError(
            f"{where}: a host name must be printable ASCII (an international name in its xn-- form)"
        )
    host = host.lower()
    return host[:-1] if host.endswith(".") else host


def _not_allowed(region: str, allowed: tuple[str, ...]) -> str:
    return f"{region!r} is not an allowed region; allowed: {', '.join(map(repr, allowed))}"


# -- the endpoints of each kind ----------------------------------------------------------


def _pg_clusters(settings: Settings, environ: Mapping[str, str]) -> Iterator[Endpoint]:
    clusters, regions = settings.pg_clusters, settings.pg_cluster_regions
    unknown = sorted(set(regions) - set(clusters))
    if unknown:
        raise ConfigError(
            f"ONTRACK_PG_CLUSTER_REGIONS: {unknown[0]!r} is not a cluster of ONTRACK_PG_CLUSTERS"
        )
    for name in sorted(clusters):
        if name not in regions:
            raise ConfigError(
                f"ONTRACK_PG_CLUSTER_REGIONS: cluster {name!r} declares no region (every "
                "cluster of ONTRACK_PG_CLUSTERS needs one)"
            )
        where = f"ONTRACK_PG_CLUSTERS: cluster {name!r}"
        params = _conninfo(clusters[name].get_secret_value(), where)
        hosts, local = _pg_route(params, environ, where)
        yield Endpoint(
            "ONTRACK_PG_CLUSTERS",
            f"cluster {name!r}",
            "ONTRACK_PG_CLUSTER_REGIONS",
            regions[name],
            hosts,
            local,
            params.get("sslmode") == "verify-full",
            "sslmode=verify-full",
        )


def _conninfo(dsn: str, where: str) -> dict[str, str]:
    # libpq would stop reading at a NUL: refused rather than read otherwise than it is used.
    if "\x00" in dsn:
        raise ConfigError(f"{where}: the connection string holds a NUL character")
    try:
        return conninfo_to_dict(dsn)
    except (psycopg.Error, ValueError):  # libpq's message quotes the text: never shown
        raise ConfigError(f"{where}: not a valid PostgreSQL connection string") from None


def _pg_route(
    params: Mapping[str, str], environ: Mapping[str, str], where: str
) -> tuple[tuple[str, ...], bool]:
    """The host names a cluster's connections go to, and whether every connection stays on
    this machine. Each of host and hostaddr comes from the connection string, else from a
    service file (not read: the route is unknown) or the PGHOST / PGHOSTADDR variable."""
    service = bool(params.get("service") or environ.get("PGSERVICE"))
    unknown = False
    values = {}
    for keyword, variable in (("host", "PGHOST"), ("hostaddr", "PGHOSTADDR")):
        if keyword in params:
            values[keyword] = params[keyword]
        elif service:
            values[keyword], unknown = "", True
        else:
            values[keyword] = environ.get(variable, "")
    names, local = [], not unknown
    for entry in values["host"].split(","):  # "" (none named): the local socket
        if entry.strip().startswith("/"):  # a Unix socket directory
            continue
        host = _host(entry, where)
        if host:
            names.append(host)
            local = local and is_loopback(host)
    for entry in values["hostaddr"].split(","):  # an address, used instead of the host's
        address = _host(entry, where)
        local = local and (not address or is_loopback(address))
    return tuple(names), local


def _brokers(settings: Settings, environ: Mapping[str, str]) -> Iterator[Endpoint]:
    urls = broker_urls(settings.amqp_url.get_secret_value())
    for number, (text, scheme, parts) in enumerate(urls, 1):
        what = "the broker URL" if len(urls) == 1 else f"broker URL {number} of {len(urls)}"
        if parts is None or "://" not in text:  # a bare host is kombu's plaintext amqp
            raise ConfigError(
                f"ONTRACK_AMQP_URL: {what} is not a URL (amqps://USER:PASSWORD@HOST/VHOST)"
            )
        raw = unquote(parts.hostname or "")
        host = _host(raw, f"ONTRACK_AMQP_URL: {what}")
        cert_reqs = dict(parse_qsl(parts.query)).get("ssl_cert_reqs", "CERT_REQUIRED")
        yield Endpoint(
            "ONTRACK_AMQP_URL",
            what,
            "ONTRACK_AMQP_REGION",
            settings.amqp_region,
            (host,) if host else (),
            # No host at all is kombu's localhost; a host that reads as nothing once trimmed
            # (".", " ") is still the name kombu resolves, not this machine.
            not raw or is_loopback(host),
            scheme == "amqps" and cert_reqs in ("CERT_REQUIRED", "required"),
            "amqps:// with the broker's certificate verified",
        )


def _kms(settings: Settings, environ: Mapping[str, str]) -> Iterator[Endpoint]:
    if settings.kms_provider != "aws":
        return
    if not settings.kms_key_id:
        raise ConfigError(
            f"ONTRACK_KMS_KEY_ID: required with ONTRACK_KMS_PROVIDER=aws (the platform key's "
            f"ARN, {KEY_ARN_FORM})"
        )
    arn = KEY_ARN_RE.match(settings.kms_key_id)
    if arn is None:
        raise ConfigError(f"ONTRACK_KMS_KEY_ID: not a KMS key ARN ({KEY_ARN_FORM})")
    yield Endpoint("ONTRACK_KMS_KEY_ID", "the platform key", "ONTRACK_KMS_KEY_ID", arn["region"])
    if settings.kms_region:
        declared, region_setting = settings.kms_region, "ONTRACK_KMS_REGION"
    else:
        declared, region_setting = arn["region"], "ONTRACK_KMS_KEY_ID"
    url = settings.kms_endpoint_url
    if not url:  # boto3's own endpoint of the region, over HTTPS
        yield Endpoint("ONTRACK_KMS_REGION", "the KMS endpoint", region_setting, declared)
        return
    where = "ONTRACK_KMS_ENDPOINT_URL"
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: not an http(s) URL")
    # A user part or a backslash is read differently by urlsplit and by urllib3 (which
    # boto3 connects with): "https://a\\@b/" is host b here and host a there. Neither has
    # a use in a KMS endpoint, so both are refused.
    if "@" in parts.netloc or "\\" in url:
        raise ConfigError(f"{where}: a user part or a backslash has no place in it")
    host = _host(unquote(parts.hostname), where)
    yield Endpoint(
        where,
        "the KMS endpoint",
        region_setting,
        declared,
        (host,),
        is_loopback(host),
        parts.scheme == "https",
        "https://",
    )


# Every kind of endpoint a process may use. Object storage (backups) will be one more here.
ENDPOINTS: tuple[Callable[[Settings, Mapping[str, str]], Iterator[Endpoint]], ...] = (
    _pg_clusters,
    _brokers,
    _kms,
)


def check(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Refuse `settings` (ConfigError, one line naming the setting) if an endpoint lies
    outside the allowed regions or, outside development mode, would be reached in plaintext.
    `environ`: the process's environment, for the PG* variables libpq reads."""
    allowed = settings.allowed_regions
    for endpoints in ENDPOINTS:
        for endpoint in endpoints(settings, environ or {}):
            _check(endpoint, allowed, settings.development)


def _check(endpoint: Endpoint, allowed: tuple[str, ...], development: bool) -> None:
    if endpoint.region not in allowed:
        raise ConfigError(
            f"{endpoint.region_setting}: {endpoint.what}: {_not_allowed(endpoint.region, allowed)}"
        )
    for host in endpoint.hosts:
        told = region_of_host(host)
        if told is not None and told != endpoint.region:
            raise ConfigError(
                f"{endpoint.setting}: {endpoint.what}: its host name is in {told!r}, not in "
                f"{endpoint.region!r} as {endpoint.region_setting} declares"
            )
    if not (development or endpoint.local or endpoint.encrypted):
        raise ConfigError(
            f"{endpoint.setting}: {endpoint.what}: {endpoint.needs} is required outside "
            "development mode (only loopback and local sockets may be reached in plaintext)"
        )
