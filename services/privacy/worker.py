"""Privacy's worker: records data subjects from identity's user events."""

import ontrackio.core.greening  # noqa: F401,I001 - must patch before anything else

from ontrackio.core import entry
from ontrackio.core.worker import ServiceWorker, applies
from ontrackio.privacy import subjects


class PrivacyWorker(ServiceWorker):
    name = "privacy"

    @applies("identity", "user_created")
    def handle_user_created(self, u, payloads):
        subjects.record(u, [(m.user_id, m.email) for m in payloads])


def main() -> None:
    entry.worker_main("privacy", PrivacyWorker)


if __name__ == "__main__":
    main()
