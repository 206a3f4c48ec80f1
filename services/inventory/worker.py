"""Inventory's worker: keeps owner references current from identity's user events."""

import ontrackio.core.greening  # noqa: F401,I001 - must patch before anything else

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry
from ontrackio.core.worker import ServiceWorker, applies
from ontrackio.inventory import assets


class InventoryWorker(ServiceWorker):
    name = "inventory"

    @applies
    def handle_user_created(self, u, payloads):
        assets.record_owners(u, [(m.user_id, m.email) for m in payloads])

    @applies
    def handle_user_deactivated(self, u, payloads):
        assets.record_leavers(u, [m.user_id for m in payloads])


def main() -> None:
    entry.worker_main("inventory", InventoryWorker, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
