"""Gateway configuration.

Typed, loaded once at start, overridable by ``ONTRACK_GATEWAY_*`` variables.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ontrackio.gateway.allowlist import parse_cidrs
from ontrackio.gateway.client_ip import IPNetwork
from ontrackio.gateway.hosts import normalise_host
from ontrackio.gateway.limits import DEFAULT_MAX_JSON_DEPTH
from ontrackio.gateway.securitytxt import CONTACT_SCHEMES, render_security_txt

ENV_PREFIX = "ONTRACK_GATEWAY_"
# Used when no Expires is configured: always half a year ahead of the process start.
SECURITY_TXT_ROLLING_EXPIRY = timedelta(days=180)


# A trusted proxy's X-Forwarded-For is believed, so a range wider than any operator's proxies
# lets every client there forge its address. Shorter prefixes than these are refused.
MIN_PROXY_PREFIX = {4: 8, 6: 16}
# IPv6 ranges that carry every IPv4 address (mapped, compatible, NAT64, 6to4, Teredo): trusting
# one of them whole trusts the IPv4 Internet.
IPV4_EMBEDDING = tuple(
    ip_network(n)
    for n in ("::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)


class SettingsError(ValueError):
    """Configuration is unusable; the one-line message names each bad variable."""


def is_catch_all_proxy(network: IPv4Network | IPv6Network) -> bool:
    """True for a trusted-proxy entry that trusts (nearly) everyone.

    Refused: a prefix shorter than MIN_PROXY_PREFIX (so every /0 such as ``0.0.0.0/0``,
    ``::/0``, and ``::ffff:0:0/96``, which parses as ``0.0.0.0/0``), and any IPv6 range holding a
    whole IPV4_EMBEDDING range.
    """
    if network.prefixlen < MIN_PROXY_PREFIX[network.version]:
        return True
    return isinstance(network, IPv6Network) and any(
        network.supernet_of(embedding)  # type: ignore[arg-type]
        for embedding in IPV4_EMBEDDING
    )


def _refuse_catch_alls(entries: Sequence[str], networks: Sequence[IPNetwork]) -> None:
    wide = [
        entry.strip() if str(net) == entry.strip() else f"{entry.strip()} (= {net})"
        for entry, net in zip(entries, networks, strict=True)
        if is_catch_all_proxy(net)
    ]
    if wide:
        raise ValueError(
            f"{', '.join(wide)} would trust any client's X-Forwarded-For; list the proxies' own "
            f"ranges (at least /{MIN_PROXY_PREFIX[4]} for IPv4, /{MIN_PROXY_PREFIX[6]} for IPv6, "
            "none embedding every IPv4 address)"
        )


def _list_from_env(value: Any) -> Any:
    # Lists arrive from the environment as "a, b" or a JSON array; both are accepted.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)
    base_domain: str = "localhost"
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = []

    max_body_bytes: int = Field(1_048_576, ge=1)
    max_json_depth: int = Field(DEFAULT_MAX_JSON_DEPTH, ge=1, le=256)

    rate_limit_ip_per_second: float = Field(20.0, gt=0)
    rate_limit_ip_burst: int = Field(40, ge=1)
    rate_limit_token_per_second: float = Field(10.0, gt=0)
    rate_limit_token_burst: int = Field(20, ge=1)
    rate_limit_max_keys: int = Field(50_000, ge=1)

    security_txt_contact: Annotated[list[str], NoDecode] = []
    security_txt_policy: str | None = None
    security_txt_expires: datetime | None = None
    security_txt_preferred_languages: Annotated[list[str], NoDecode] = ["en"]
    security_txt_canonical: str | None = None

    # Calls to the services behind the gateway, and what the gateway remembers of identity.
    upstream_deadline_seconds: float = Field(5.0, gt=0, le=60)
    tenant_cache_seconds: float = Field(2.0, ge=0, le=300)
    token_cache_seconds: float = Field(5.0, ge=0, le=60)  # fallback when an event is lost
    allowlist_cache_seconds: float = Field(5.0, ge=0, le=60)
    session_cache_seconds: float = Field(5.0, ge=0, le=60)  # fallback when an event is lost
    negative_cache_seconds: float = Field(5.0, ge=0, le=300)
    cache_max_entries: int = Field(20_000, ge=100)
    # Token look-ups (cache misses) allowed per client address: a flood of well-formed unknown
    # tokens is refused here before it reaches identity.
    token_lookup_per_second: float = Field(5.0, gt=0)
    token_lookup_burst: int = Field(20, ge=1)
    token_touch_seconds: float = Field(60.0, ge=1)  # last-used is written at most this often
    # Socket peers allowed to read /metrics (never through a trusted proxy).
    metrics_allow: Annotated[list[IPNetwork], NoDecode] = ["127.0.0.0/8", "::1/128"]  # type: ignore[assignment]

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_key_password: SecretStr | None = None
    hsts_max_age: int = Field(63_072_000, ge=0)
    # How browsers reach a tenant: https://<slug>.<base_domain>[:public_port]. SAML ACS and
    # OIDC redirect URLs are built from this, never from the request's (forwarded) headers.
    # Unset: https when this process serves TLS (else http), and its own port.
    public_scheme: Literal["https", "http"] | None = None
    public_port: int | None = Field(None, ge=1, le=65535)

    @field_validator("trusted_proxies", "metrics_allow", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any, info: ValidationInfo) -> Any:
        value = _list_from_env(value)
        if not isinstance(value, list):
            return value
        if all(isinstance(v, str) for v in value):
            networks: list[Any] = parse_cidrs(value)
        elif all(isinstance(v, IPv4Network | IPv6Network) for v in value):
            networks = value
        else:
            return value  # pydantic reports the wrong types
        if info.field_name == "trusted_proxies":
            _refuse_catch_alls([str(v) for v in value], networks)
        return networks

    @field_validator("security_txt_contact", "security_txt_preferred_languages", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        return _list_from_env(value)

    @field_validator("security_txt_contact")
    @classmethod
    def _contact_schemes(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if not c.startswith(CONTACT_SCHEMES)]
        if bad:
            raise ValueError(f"Contact must be mailto:, https:// or tel: URIs, got {bad!r}")
        return value

    @field_validator("security_txt_policy", "security_txt_canonical")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError(f"must be an https:// URI, got {value!r}")
        return value

    @field_validator("base_domain")
    @classmethod
    def _check_base_domain(cls, value: str) -> str:
        normalised = normalise_host(value)
        if normalised is None or normalised.startswith("["):
            raise ValueError(f"not a domain name: {value!r}")
        return normalised

    @field_validator("tls_cert_file", "tls_key_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("security_txt_expires")
    @classmethod
    def _in_future(cls, value: datetime | None) -> datetime | None:
        if value is not None:
            value = value if value.tzinfo else value.replace(tzinfo=UTC)
            if value <= datetime.now(UTC):
                raise ValueError("security.txt Expires is in the past; set a new date")
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> GatewaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def browser_scheme(self) -> str:
        """The scheme browsers reach tenants over (``public_scheme``, else by TLS here)."""
        return self.public_scheme or ("https" if self.tls_enabled else "http")

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` when browsers come over https, and on ``localhost`` hosts,
        which browsers treat as secure even over http (so the ``__Host-`` cookies of
        development and the tests are kept by real browsers too)."""
        local = self.base_domain == "localhost" or self.base_domain.endswith(".localhost")
        return self.browser_scheme == "https" or local

    def canonical_origin(self, slug: str) -> str:
        """The tenant's canonical origin, e.g. ``https://acme.ontrack.example``."""
        scheme = self.browser_scheme
        port = self.public_port if self.public_port is not None else self.port
        default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        return f"{scheme}://{slug}.{self.base_domain}" + ("" if default else f":{port}")

    def security_txt(self) -> str | None:
        """The rendered security.txt.

        None when no contact is configured (then nothing is served).
        """
        if not self.security_txt_contact:
            return None
        expires = self.security_txt_expires or datetime.now(UTC) + SECURITY_TXT_ROLLING_EXPIRY
        return render_security_txt(
            contact=self.security_txt_contact,
            expires=expires,
            policy=self.security_txt_policy,
            preferred_languages=self.security_txt_preferred_languages,
            canonical=self.security_txt_canonical,
        )


def load_settings(**overrides: Any) -> GatewaySettings:
    """Load from the environment (plus explicit overrides).

    Raise SettingsError naming each bad variable, all on one line (``NAME: reason; NAME: …``).
    """
    try:
        return GatewaySettings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else "settings"
            name = (
                f"{ENV_PREFIX}{field.upper()}" if field in GatewaySettings.model_fields else field
            )
            message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
            lines.append(f"{name}: {message}")
        raise SettingsError("invalid gateway configuration: " + "; ".join(lines)) from exc
