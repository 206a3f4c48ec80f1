"""The composition root of a service process: builds its infrastructure from settings.

Nothing here runs at import time; api and worker entrypoints call `build()` once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ontrackio.core import telemetry
from ontrackio.core.bus import Publisher
from ontrackio.core.config import Settings
from ontrackio.core.db import migrations
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.db.tenantdb import TenantDatabases
from ontrackio.core.directory import TenantDirectory, TenantInfo


def service_dir(service: str) -> Path:
    return Path(importlib.import_module(f"ontrackio.{service}").__file__).resolve().parent


@dataclass
class Runtime:
    service: str
    settings: Settings
    clusters: Clusters
    pools: PoolManager
    publisher: Publisher
    directory: TenantDirectory
    dbs: TenantDatabases
    provisioner: Provisioner

    def close(self) -> None:
        self.pools.close()
        self.publisher.close()


def build(
    service: str,
    settings: Settings,
    lookup: Callable[[Runtime], Callable[[str], TenantInfo | None]],
) -> Runtime:
    """Wire a service's infrastructure; `lookup` builds its tenant-directory source."""
    telemetry.setup(service, settings.otel_exporter)
    clusters = Clusters(settings)
    pools = PoolManager(
        max_total=settings.pool_max_per_process,
        max_per_tenant=settings.pool_max_per_tenant,
        idle_seconds=settings.pool_idle_seconds,
        acquire_timeout=settings.pool_acquire_timeout,
    )
    publisher = Publisher(settings.amqp_url.get_secret_value())
    provisioner = Provisioner(
        service,
        clusters,
        migrations.for_service(service_dir(service)),
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
    )
    rt = Runtime(service, settings, clusters, pools, publisher, None, None, provisioner)  # type: ignore[arg-type]
    rt.directory = TenantDirectory(lambda slug: source(slug), settings.tenant_cache_seconds)
    source = lookup(rt)
    rt.dbs = TenantDatabases(
        service,
        deployment=settings.deployment,
        clusters=clusters,
        pools=pools,
        directory=rt.directory,
        publisher=publisher,
    )
    return rt
