"""Identity's worker process: drives the tenant saga (readiness, deletion) and relays
the control database's outbox."""

import ontrackio.core.greening  # noqa: F401,I001 - must patch before anything else

import logging

from nameko.timer import timer

from ontrackio.core import entry, outbox
from ontrackio.core import events as ev
from ontrackio.core.tenancy import SERVICES
from ontrackio.core.worker import ServiceWorker, on
from ontrackio.identity import api

log = logging.getLogger(__name__)


def _saga_handler(state: str):
    def handle(self, event: ev.Event) -> None:
        msg = event.message()
        api.control.record_service(
            event,
            state,
            error=getattr(msg, "error", ""),
            schema_version=getattr(msg, "schema_version", 0),
        )

    return handle


class IdentityWorker(ServiceWorker):
    name = "identity"

    for _svc in SERVICES:
        locals()[f"handle_{_svc}_tenant_ready"] = on(_svc, "tenant_ready")(_saga_handler("ready"))
        locals()[f"handle_{_svc}_tenant_provisioning_failed"] = on(
            _svc, "tenant_provisioning_failed"
        )(_saga_handler("failed"))
        locals()[f"handle_{_svc}_tenant_dropped"] = on(_svc, "tenant_dropped")(
            _saga_handler("dropped")
        )
    del _svc

    @timer(interval=1)
    def start_due_deletions(self) -> None:
        for slug in api.control.start_due_deletions():
            log.info("tenant %s: grace period over, dropping its databases", slug)

    def sweep_all(self, rt) -> int:
        with api.control.uow() as u:
            sent = outbox.sweep(u.conn, rt.publisher, min_age=5.0)
        return sent + super().sweep_all(rt)


def main() -> None:
    entry.worker_main("identity", IdentityWorker, api.bootstrap)


if __name__ == "__main__":
    main()
