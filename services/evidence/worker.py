"""Evidence's worker: records asset facts from inventory's events."""

import ontrackio.core.greening  # noqa: F401,I001 - must patch before anything else

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry
from ontrackio.core.worker import ServiceWorker, applies
from ontrackio.evidence import metrics


class EvidenceWorker(ServiceWorker):
    name = "evidence"

    @applies
    def handle_asset_created(self, u, payloads):
        metrics.record_assets(u, [(m.asset_id, m.kind, bool(m.owner_user_id)) for m in payloads])


def main() -> None:
    entry.worker_main("evidence", EvidenceWorker, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
