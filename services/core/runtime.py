"""The composition root of a service process: builds its infrastructure from settings.

Nothing here runs at import time; api and worker entrypoints call `build()` once.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ontrackio.core import telemetry
from ontrackio.core.audit import log as audit_log
from ontrackio.core.bus import Publisher
from ontrackio.core.config import ConfigError, Settings
from ontrackio.core.contract import Deployment
from ontrackio.core.db import migrations
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.db.tenantdb import TenantDatabases
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.events import EventTypes
from ontrackio.core.keys import provider as key_provider
from ontrackio.core.keys.envelope import FieldCipher
from ontrackio.core.keys.kms import KeyProvider
from ontrackio.core.keys.ring import KeySource, TenantKeys
from ontrackio.core.relay import Relay

log = logging.getLogger(__name__)


def service_dir(service: str) -> Path:
    return Path(importlib.import_module(f"ontrackio.{service}").__file__).resolve().parent


@dataclass
class Runtime:
    service: str
    settings: Settings
    clusters: Clusters
    pools: PoolManager
    publisher: Publisher
    relay: Relay
    provisioner: Provisioner
    deployment: Deployment  # the contracts of the services this process knows
    directory: TenantDirectory = field(init=False)
    dbs: TenantDatabases = field(init=False)
    kms: KeyProvider = field(init=False)  # the key provider (core/keys)
    keys: TenantKeys = field(init=False)  # this service's tenants' data keys
    fields: FieldCipher = field(init=False)  # encrypted fields of its tenant databases

    @property
    def events(self) -> EventTypes:
        """The event types of the deployment (from its contracts)."""
        return self.deployment.events

    def close(self) -> None:
        self.relay.close()
        self.pools.close()
        self.publisher.close()


def build(
    service: str,
    settings: Settings,
    lookup: Callable[[Runtime], Callable[[str], TenantInfo | None]],
    deployment: Deployment,
    kind: type[Runtime] = Runtime,
    key_source: Callable[[Runtime], KeySource] | None = None,
) -> Runtime:
    """Wire a service's infrastructure; `lookup(rt)` gives its tenant-directory source,
    `deployment` the contracts of the services the process knows, `kind` the Runtime
    class (a service may add its own parts to it), `key_source(rt)` where its tenants'
    wrapped data keys come from (default: the key store the deployment names). A key
    provider the settings refuse (local outside development mode) is a ConfigError."""
    telemetry.setup(service, settings.otel_exporter)
    clusters = Clusters(settings)
    pools = PoolManager(
        max_total=settings.pool_max_per_process,
        max_per_tenant=settings.pool_max_per_tenant,
        idle_seconds=settings.pool_idle_seconds,
        acquire_timeout=settings.pool_acquire_timeout,
    )
    amqp = settings.amqp_url.get_secret_value()
    rt = kind(
        service,
        settings,
        clusters,
        pools,
        Publisher(amqp),
        Relay([Publisher(amqp) for _ in range(settings.relay_publishers)], pools),
        Provisioner(
            service,
            clusters,
            migrations.for_service(service_dir(service)),
            settings.deployment,
            settings.tenant_role_secret.get_secret_value(),
        ),
        deployment,
    )
    source = lookup(rt)  # may use rt's clusters and pools, not its directory
    rt.directory = TenantDirectory(source, settings.tenant_cache_seconds)
    rt.dbs = TenantDatabases(
        service,
        deployment=settings.deployment,
        clusters=clusters,
        pools=pools,
        directory=rt.directory,
        publisher=rt.publisher,
        relay=rt.relay,
        events=deployment.events,
    )
    rt.kms = key_provider.from_settings(settings)
    if key_source is None:
        if deployment.key_source is None:
            raise ConfigError(f"{service}: the deployment names no key store to ask")
        source = deployment.key_source(settings, service)
    else:
        source = key_source(rt)
    rt.keys = TenantKeys(
        service,
        settings.deployment,
        rt.kms,
        source,
        ttl=settings.data_key_cache_seconds,
        retry=settings.data_key_retry_seconds,
        on_unavailable=lambda info, cause: _audit_key(rt, info, "key.unavailable", cause),
        on_restored=lambda info: _audit_key(rt, info, "key.restored", None),
    )
    rt.fields = FieldCipher(rt.keys)
    return rt


def _audit_key(rt: Runtime, info: TenantInfo, action: str, cause: str | None) -> None:
    """An audit entry in the tenant's database when its key becomes unusable or usable
    again for this process (best effort: the database may be what failed)."""
    try:
        with rt.dbs.unit_of_work(info) as u:
            audit_log.append(
                u.conn,
                audit_log.Entry(
                    "system",
                    action,
                    f"tenant:{info.slug}",
                    None,
                    {"service": rt.service, **({"cause": cause} if cause else {})},
                    outcome="refused" if cause else "done",
                ),
            )
    except Exception as exc:  # noqa: BLE001 - never turn a key refusal into another error
        log.warning("could not audit %s for %s: %s", action, info.slug, type(exc).__name__)
