"""The composition root of a service process: builds its infrastructure from settings.

Nothing here runs at import time; api and worker entrypoints call `build()` once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ontrackio.core import telemetry
from ontrackio.core.bus import Publisher
from ontrackio.core.config import Settings
from ontrackio.core.contract import Deployment
from ontrackio.core.db import migrations
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.db.tenantdb import TenantDatabases
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.events import EventTypes
from ontrackio.core.relay import Relay


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
) -> Runtime:
    """Wire a service's infrastructure; `lookup(rt)` gives its tenant-directory source,
    `deployment` the contracts of the services the process knows, `kind` the Runtime
    class (a service may add its own parts to it)."""
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
    return rt
