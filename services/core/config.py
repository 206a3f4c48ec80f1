"""Typed configuration, loaded once per process and validated at start.

Sources, later ones winning: defaults, an optional TOML file named by ONTRACK_CONFIG_FILE,
then ONTRACK_* environment variables. A secret may be given as ``file://PATH`` to read it
from a file. A bad or missing value stops the process with a one-line reason that names
the setting but never echoes a secret.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,11}\Z")
ROOT = Path(__file__).resolve().parents[2]
TLS_SETTINGS = ("tls_ca_file", "tls_cert_file", "tls_key_file")

# Secrets whose defaults exist only so that `make run` works out of the box. Outside
# development mode a process refuses to start while any of them still has its default.
DEVELOPMENT_DEFAULTS = {
    "tenant_role_secret": "dev-only-tenant-role-secret",
    "token_hash_key": "dev-only-token-hash-key",
}


class BrokerURL(NamedTuple):
    """One broker URL of ONTRACK_AMQP_URL as kombu reads it."""

    text: str
    scheme: str  # kombu's transport ("amqp", "amqps"); "" for a bare host (kombu: amqp)
    # Host, user, port and query as kombu reads them (kombu percent-decodes host and user);
    # None where kombu could not read them (it refuses the URL at connect).
    parts: SplitResult | None


def broker_urls(amqp_url: str) -> list[BrokerURL]:
    """Each broker URL in `amqp_url` (kombu takes several, `;`-separated), split as kombu
    splits it (``kombu.utils.url.url_to_parts``: the scheme, then the rest read as an http
    URL), so that no spelling reads one way here and another at connect."""
    urls = []
    for url in amqp_url.split(";"):
        scheme, rest = "", url
        try:
            if "://" in url:
                scheme = urlsplit(url).scheme
                rest = url[len(scheme) + 3 :]
            parts: SplitResult | None = urlsplit("http://" + rest)
            parts.port  # noqa: B018 - kombu reads it: a port that is no port raises
        except ValueError:
            parts = None
        urls.append(BrokerURL(url, scheme, parts))
    return urls


def guest_broker_user(amqp_url: str) -> bool:
    """Whether any broker URL in `amqp_url` (kombu takes several, `;`-separated) logs in as
    RabbitMQ's `guest`: named so (percent-decoded), or no user named (kombu's default)."""
    for url in broker_urls(amqp_url):
        if url.parts is None:
            continue
        user = url.parts.username
        if not user or unquote(user) == "guest":
            return True
    return False


def _loopback(host: str) -> bool:
    """A host name or address that never leaves this machine."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line, safe to print."""


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by ONTRACK_CONFIG_FILE (flat keys, lower case)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("ONTRACK_CONFIG_FILE")
        if not path:
            return {}
        try:
            return tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"ONTRACK_CONFIG_FILE: cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"ONTRACK_CONFIG_FILE: {path} is not valid TOML: {exc}") from None


class Settings(BaseSettings):
    """Every setting of the platform's processes (the gateway adds its own)."""

    model_config = SettingsConfigDict(env_prefix="ONTRACK_", extra="ignore", frozen=True)

    # Development mode (`make run`): development defaults and conveniences (gRPC reflection,
    # the local key provider) are allowed. Off unless said explicitly.
    development: bool = False

    # Names every database, role and queue this deployment creates, so that several
    # deployments (make run, each test session) share one server without touching each other.
    deployment: str = "ot"
    # PostgreSQL clusters tenants are placed on: name -> admin DSN (a role that may create
    # databases and roles). The DSN's database is the maintenance database.
    # Kept secret: a DSN may carry a password.
    pg_clusters: dict[str, SecretStr] = {
        "main": SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    }
    # Cluster of the control database and default placement of new tenants.
    pg_control_cluster: str = "main"
    # Keys the password of each per-tenant login role (HMAC), so none is stored.
    tenant_role_secret: SecretStr = SecretStr(DEVELOPMENT_DEFAULTS["tenant_role_secret"])

    # Keys the hash under which API tokens are stored (identity writes, the gateway checks).
    token_hash_key: SecretStr = SecretStr(DEVELOPMENT_DEFAULTS["token_hash_key"])

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")

    # Residency (core/residency.py): the deployment's own region and every region data may
    # live or pass through. Each endpoint a process uses declares its region; a process
    # refuses to start, naming the setting, when one is outside `allowed_regions`.
    region: str = "eu-central-1"
    allowed_regions: tuple[str, ...] = ("eu-central-1",)
    # Region of each PostgreSQL cluster in pg_clusters (name -> region); a cluster missing
    # here is refused at start.
    pg_cluster_regions: dict[str, str] = {"main": "eu-central-1"}
    # Region of the broker (amqp_url).
    amqp_region: str = "eu-central-1"

    # Envelope encryption (core/keys): each tenant's data keys are generated by the key
    # provider and stored wrapped by a key-encryption key (KEK). `local`: development only,
    # a KEK file under .run/<deployment>/kms. `aws`: AWS KMS (boto3).
    kms_provider: Literal["local", "aws"] = "local"
    # The platform's KEK: a KMS key ARN for `aws` (its region must be allowed); ignored by
    # `local`. Tenants on the Enterprise tier may name a key of their own (BYO-KMS).
    kms_key_id: str = ""
    # AWS KMS: the region of the endpoint (default: the platform key's region), and an
    # endpoint URL (a VPC endpoint; tests: the local KMS emulator). Credentials come from
    # boto3's usual chain (environment, profile, instance role), never from these settings.
    kms_region: str = ""
    kms_endpoint_url: str = ""
    # How long a process keeps a tenant's unwrapped data keys in memory. A key disabled at
    # the KMS stops a tenant's encrypted fields within this time.
    data_key_cache_seconds: float = Field(default=300.0, gt=0, le=3600)
    # After a failed unwrap, how long a process answers "tenant key unavailable" before it
    # asks the KMS again (so a disabled key does not turn every request into a KMS call).
    data_key_retry_seconds: float = Field(default=2.0, gt=0, le=300)
    # Background key jobs: data keys re-wrapped (identity) and rows re-encrypted under a
    # new data key version (every service) per second, at most.
    key_rewrap_per_second: float = Field(default=50.0, gt=0)
    reencrypt_rows_per_second: float = Field(default=500.0, gt=0)

    # Connections held by one process across all tenants, and per tenant.
    pool_max_per_process: int = Field(default=3, ge=1, le=50)
    pool_max_per_tenant: int = Field(default=2, ge=1, le=20)
    pool_idle_seconds: float = Field(default=30.0, gt=0)
    pool_acquire_timeout: float = Field(default=5.0, gt=0)

    grpc_host: str = "127.0.0.1"
    identity_grpc_port: int = 50051
    inventory_grpc_port: int = 50052
    privacy_grpc_port: int = 50053
    evidence_grpc_port: int = 50054
    grpc_workers: int = Field(default=16, ge=1, le=256)
    grpc_deadline_seconds: float = Field(default=5.0, gt=0)
    # Mutual TLS between every process (core/tls.py): the CA that peers' certificates must
    # chain to, and this process's own certificate and key (PEM). "{identity}" in a path
    # stands for the process's identity (core/trust.py), so processes sharing one
    # environment each find their own. Required outside development mode; in development
    # mode they default to the deployment's development PKI under .run/<deployment>/pki
    # (made by `make run`, devtools/pki.py).
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    # /metrics of each process ("identity-api", "identity-worker", …); by default the gRPC
    # port + 1000 for an api and + 2000 for a worker; 0 disables it.
    metrics_ports: dict[str, int] = {}

    deletion_grace_seconds: float = Field(default=7 * 24 * 3600.0, ge=0)
    event_max_attempts: int = Field(default=5, ge=1, le=50)
    event_retry_base_ms: int = Field(default=200, ge=1)
    outbox_sweep_seconds: float = Field(default=30.0, gt=0)
    # Broker connections publishing committed events in parallel (each waits for confirms).
    relay_publishers: int = Field(default=2, ge=1, le=16)
    # Events handled at once by one worker (green threads; a tenant's share one commit).
    worker_concurrency: int = Field(default=30, ge=1, le=200)
    # Unacknowledged messages a worker's batch handlers may hold (core/consumer.py).
    event_prefetch: int = Field(default=256, ge=1, le=65535)
    # How long a worker's batch handlers let a burst gather before taking it (core/consumer.py;
    # 0: events arrive in packs, which measured faster and cheaper than any pause).
    event_gather_ms: float = Field(default=0.0, ge=0, le=1000)
    # Tenant databases created or dropped at once by one worker: each holds admin
    # connections, so a burst of new tenants must not exhaust the server.
    provision_concurrency: int = Field(default=2, ge=1, le=20)
    tenant_cache_seconds: float = Field(default=5.0, ge=0)
    migrate_concurrency: int = Field(default=4, ge=1, le=32)
    # Audit trail (core/audit): identity's worker seals and anchors the chain heads of this
    # many tenant databases every interval, the least recently visited first.
    audit_anchor_seconds: float = Field(default=10.0, gt=0)
    audit_anchor_batch: int = Field(default=50, ge=1, le=10_000)
    # Refused attempts other processes report (RecordRefusal): per tenant, per second.
    audit_refusals_per_second: float = Field(default=5.0, gt=0)
    audit_refusals_burst: int = Field(default=50, ge=1)
    # SAML single sign-on (identity/sso/saml, issue 12 part "saml"): an IdP SSO or metadata
    # URL must be https; http to a loopback address only with this (tests run their IdP
    # there). Metadata URLs are fetched with this timeout.
    saml_allow_loopback_http: bool = False
    saml_metadata_timeout_seconds: float = Field(default=5.0, gt=0, le=30)

    # Local sign-in (identity/signin, docs/local-signin.md; part "local" of issue 12).
    # Outgoing mail (invitation links) goes through each tenant's mail outbox to this SMTP
    # server; with no host, messages wait in the outbox until one is configured.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    # starttls (verified certificate) | tls (implicit, port 465) | none (loopback only
    # outside development mode)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    mail_from: str = "OnTrackio <no-reply@localhost>"
    # A message the server did not take is tried again after base x 2^(n-1) seconds (at
    # most max), and is dead after max_attempts attempts or a permanent (5xx) refusal.
    mail_retry_base_seconds: float = Field(default=30.0, gt=0)
    mail_retry_max_seconds: float = Field(default=3600.0, gt=0)
    mail_max_attempts: int = Field(default=8, ge=1, le=100)
    # How often identity's worker looks for due messages besides being woken by new ones.
    mail_poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    # The Have I Been Pwned range API for new passwords ("" off, e.g.
    # https://api.pwnedpasswords.com); the bundled common-password list is always checked.
    password_breach_api_url: str = ""
    password_breach_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    # Failed password sign-ins from one address (an IPv6 /64) within the window block that
    # address for the window (per tenant; the account lockout is the tenant policy's).
    signin_address_failures: int = Field(default=50, ge=1, le=100_000)
    signin_address_window_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)

    # OIDC sign-in (issue 12, item 4; identity/sso/oidc). Identity calls the tenants' IdPs:
    # each call (discovery, JWKS, token) is bounded by the timeout; discovery documents and
    # key sets are cached, a token signed by an unknown key refetches the key set once (at
    # most once per refetch interval per key set). A login must finish within its TTL; at
    # the SSO pending-login budget below.
    oidc_http_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    oidc_metadata_cache_seconds: float = Field(default=3600.0, ge=0, le=86_400)
    oidc_jwks_min_refetch_seconds: float = Field(default=10.0, ge=0, le=3600)
    oidc_login_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    # Unfinished SSO logins (OIDC logins started, SAML requests issued; identity/sso/pending.py):
    # one client (address, IPv6 /64) may hold `per_client` of each kind (beyond: 429 for it
    # alone); past `per_tenant` the oldest are evicted, nobody is refused.
    sso_pending_logins_per_client: int = Field(default=30, ge=1, le=10_000)
    sso_pending_logins_per_tenant: int = Field(default=10_000, ge=10, le=1_000_000)
    # Tests only: lets IdP URLs use plain http to a loopback host (the in-process provider).
    # Every other host must be https and resolve to public addresses only.
    oidc_allow_loopback_http: bool = False
    # Verified domains (issue 12, domains part; identity/sso/dnscheck.py): the resolvers a
    # domain's TXT challenge is looked up with (IP addresses, asked on dns_port; empty: the
    # system's resolvers from /etc/resolv.conf) and the time one check may take in all.
    # Point them at a validating resolver: the check believes what they answer.
    dns_nameservers: tuple[str, ...] = ()
    dns_port: int = Field(default=53, ge=1, le=65535)
    dns_timeout_seconds: float = Field(default=2.0, gt=0, le=10)

    # none | console | file:PATH (JSON lines, one span a line)
    otel_exporter: str = "none"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    @field_validator("deployment")
    @classmethod
    def _deployment(cls, v: str) -> str:
        if not PREFIX_RE.match(v):
            raise ValueError("must match [a-z][a-z0-9]{0,11}")
        return v

    @field_validator(
        "tenant_role_secret", "token_hash_key", "amqp_url", "smtp_password", mode="before"
    )
    @classmethod
    def _file_indirection(cls, v: Any) -> Any:
        if isinstance(v, str) and v.startswith("file://"):
            try:
                return Path(v[len("file://") :]).read_text().strip()
            except OSError as exc:
                raise ValueError(f"cannot read secret file: {exc.strerror}") from None
        return v

    @field_validator("dns_nameservers")
    @classmethod
    def _nameservers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for address in v:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address[:64]!r} is not an IP address") from None
        return v

    @field_validator("otel_exporter")
    @classmethod
    def _exporter(cls, v: str) -> str:
        if v in ("none", "console") or (v.startswith("file:") and len(v) > 5):
            return v
        raise ValueError("must be none, console or file:PATH")

    @field_validator("password_breach_api_url")
    @classmethod
    def _breach_api(cls, v: str) -> str:
        if v and (urlsplit(v).scheme not in ("https", "http") or not urlsplit(v).hostname):
            raise ValueError(
                "must be empty (off) or an http(s) URL such as https://api.pwnedpasswords.com"
            )
        return v

    @model_validator(mode="after")
    def _placement(self) -> Settings:
        if not self.pg_clusters:
            raise ValueError("pg_clusters: at least one cluster is needed")
        if self.pg_control_cluster not in self.pg_clusters:
            raise ValueError(
                f"pg_control_cluster: {self.pg_control_cluster!r} is not in pg_clusters"
            )
        if self.region not in self.allowed_regions:
            raise ValueError(f"region: {self.region!r} is not an allowed region")
        if not self.development:
            for name, default in DEVELOPMENT_DEFAULTS.items():
                if getattr(self, name).get_secret_value() == default:
                    raise ValueError(
                        f"{name}: the development default is refused outside development "
                        "mode; set a secret (or ONTRACK_DEVELOPMENT=true on a developer machine)"
                    )
            if guest_broker_user(self.amqp_url.get_secret_value()):
                raise ValueError(
                    "amqp_url: the broker's guest user is refused outside development mode; "
                    "connect as the deployment's own user"
                )
            if self.smtp_host and self.smtp_security == "none" and not _loopback(self.smtp_host):
                raise ValueError(
                    "smtp_security: none (plaintext) is refused outside development mode for a "
                    "server that is not on this machine; use starttls or tls"
                )
            breach = urlsplit(self.password_breach_api_url)
            if breach.scheme == "http" and not _loopback(breach.hostname or ""):
                raise ValueError(
                    "password_breach_api_url: plain http is refused outside development mode"
                )
            for name in TLS_SETTINGS:
                if not getattr(self, name):
                    raise ValueError(
                        f"{name}: required outside development mode (mutual TLS between "
                        "processes; see docs/architecture.md, Trust inside the system)"
                    )
        return self

    def pg_dsn(self, cluster: str) -> str:
        """The admin DSN of `cluster`."""
        return self.pg_clusters[cluster].get_secret_value()

    def metrics_port(self, process: str) -> int:
        if process in self.metrics_ports:
            return self.metrics_ports[process]
        service, role = process.rsplit("-", 1)
        return getattr(self, f"{service}_grpc_port") + (1000 if role == "api" else 2000)

    def tls_paths(self, identity: str) -> tuple[Path, Path, Path]:
        """The CA, certificate and key files of `identity` (a process's own identity)."""
        dev = ROOT / ".run" / self.deployment / "pki"
        ca = self.tls_ca_file or str(dev / "ca.pem")
        cert = self.tls_cert_file or str(dev / "{identity}.pem")
        key = self.tls_key_file or str(dev / "{identity}-key.pem")
        return tuple(Path(p.replace("{identity}", identity)) for p in (ca, cert, key))

    def grpc_target(self, service: str) -> str:
        return f"{self.grpc_host}:{getattr(self, f'{service}_grpc_port')}"


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    where = ".".join(str(p) for p in first["loc"])
    if not where:  # a cross-field check: its message starts with the field at fault
        where, _, msg = msg.partition(": ")
    # The message never includes the input: it may be a secret.
    return f"ONTRACK_{where.upper()}: {msg}"


def load(**overrides: Any) -> Settings:
    """Build settings from the environment (and the file); raises ConfigError, one line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except SettingsError as exc:  # a structured value (JSON) that does not parse
        field = str(exc).split('"')[1] if '"' in str(exc) else "settings"
        raise ConfigError(f"ONTRACK_{field.upper()}: not valid JSON") from None


@functools.cache
def settings() -> Settings:
    """The process's settings, loaded once."""
    return load()


def settings_or_exit() -> Settings:
    """The process's settings, checked for residency (core/residency.py), or exit(2) with
    the one-line reason on stderr. Every process's start goes through here."""
    from ontrackio.core import residency  # it reads this module's Settings

    try:
        loaded = settings()
        residency.check(loaded, os.environ)
        return loaded
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
