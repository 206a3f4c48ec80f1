"""Process entrypoints shared by the services: configuration, logging, wiring, serving.

Each service's entry module hands in its `Deployment`: the contracts of the services the
process knows (core/contract.py), from which the topology is declared and events typed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from ontrackio.core import bus, config, grpcserver, logs, metrics, topology
from ontrackio.core.contract import Deployment
from ontrackio.core.keys import status_api as encryption_status
from ontrackio.core.runtime import Runtime, build


def _or_exit(build: Callable[[], object]):
    """`build()`, or exit(2) with the one-line reason of a ConfigError (e.g. TLS files)."""
    try:
        return build()
    except config.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def setup(service: str, role: str):
    settings = config.settings_or_exit()
    logs.setup(f"{service}-{role}", settings.log_level, settings.log_format)
    return settings


def default_bootstrap(service: str, settings, deployment: Deployment) -> Runtime:
    """A domain service's runtime: its tenant directory asks the registry the deployment
    names (``Deployment.tenant_lookup``)."""
    if deployment.tenant_lookup is None:
        raise config.ConfigError(f"{service}: the deployment names no tenant registry to ask")
    lookup = deployment.tenant_lookup(settings, service)
    return build(service, settings, lambda rt: lookup, deployment)


def api_main(
    service: str,
    registrations: Callable[[Runtime], list[grpcserver.Registration]],
    bootstrap: Callable[..., Runtime] | None = None,
    *,
    deployment: Deployment,
) -> None:
    settings = setup(service, "api")
    topology.declare(settings.amqp_url.get_secret_value(), deployment)
    rt = _or_exit(lambda: (bootstrap or default_bootstrap)(service, settings, deployment))
    port_setting = getattr(settings, f"{service}_grpc_port")
    server, port = _or_exit(
        lambda: grpcserver.build_server(
            service,
            [*registrations(rt), encryption_status.registration(rt)],
            rt.directory,
            settings,
            address=f"{settings.grpc_host}:{port_setting}",
            workers=settings.grpc_workers,
        )
    )
    logging.getLogger(service).info("%s api listening on %s:%d", service, settings.grpc_host, port)
    metrics.serve(
        settings.metrics_port(f"{service}-api"),
        settings.grpc_host,
        metrics.RuntimeCollector(service, "api", rt),
    )
    grpcserver.run_forever(server, rt.close)


def worker_main(
    service: str,
    worker_cls: type,
    bootstrap: Callable[..., Runtime] | None = None,
    *,
    deployment: Deployment,
) -> None:
    from ontrackio.core.worker import run_worker

    settings = setup(service, "worker")
    topology.declare(settings.amqp_url.get_secret_value(), deployment)
    rt = _or_exit(lambda: (bootstrap or default_bootstrap)(service, settings, deployment))
    amqp = settings.amqp_url.get_secret_value()
    metrics.serve(
        settings.metrics_port(f"{service}-worker"),
        settings.grpc_host,
        metrics.RuntimeCollector(service, "worker", rt, lambda: bus.queue_depth(amqp, bus.DLQ)),
    )
    run_worker(worker_cls, rt)
