"""Identity's worker process: drives the tenant saga (readiness, deletion) and relays
the control database's outbox. Which events it handles is its contract's (contract.py)."""

import ontrackio.core.greening  # noqa: F401,I001 - must patch before anything else

import logging

from nameko.timer import timer

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry, outbox
from ontrackio.core import events as ev
from ontrackio.core.worker import ServiceWorker, on
from ontrackio.identity import api

log = logging.getLogger(__name__)


class IdentityWorker(ServiceWorker):
    name = "identity"

    def _record(self, event: ev.Event, state: str) -> None:
        """Apply one service's saga report (of every service: see the contract)."""
        msg = event.message()
        self.platform.control.record_service(
            event,
            state,
            error=getattr(msg, "error", ""),
            schema_version=getattr(msg, "schema_version", 0),
        )

    @on
    def handle_tenant_ready(self, event: ev.Event) -> None:
        self._record(event, "ready")

    @on
    def handle_tenant_provisioning_failed(self, event: ev.Event) -> None:
        self._record(event, "failed")

    @on
    def handle_tenant_dropped(self, event: ev.Event) -> None:
        self._record(event, "dropped")

    @timer(interval=1)
    def start_due_deletions(self) -> None:
        for slug in self.platform.control.start_due_deletions():
            log.info("tenant %s: grace period over, dropping its databases", slug)

    def sweep_all(self, rt) -> int:
        with rt.control.uow() as u:
            sent = outbox.sweep(u.conn, rt.publisher, min_age=5.0)
        return sent + super().sweep_all(rt)


def main() -> None:
    entry.worker_main("identity", IdentityWorker, api.bootstrap, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
