"""Identity's worker process: drives the tenant saga (readiness, deletion), relays the
control database's outbox and anchors the audit chains of every tenant database. Which
events it handles is its contract's (contract.py)."""

import ontrackio.core.greening  # noqa: F401,I001 - must patch before anything else

import logging
import time
from datetime import UTC, datetime

import psycopg
from nameko.timer import timer

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import entry, outbox
from ontrackio.core.audit import anchor
from ontrackio.core import events as ev
from ontrackio.core.worker import ServiceWorker, on
from ontrackio.identity import api
from ontrackio.identity.signin import mail, mail_rules
from ontrackio.identity.signin.smtp import Smtp

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

    @timer(interval=1)
    def rewrap_data_keys(self) -> None:
        """Every second: re-wrap up to ONTRACK_KEY_REWRAP_PER_SECOND data keys that are not
        under their tenant's KEK (BYO-KMS switch, KEK rotation); see identity/keystore.py."""
        rt = self.platform
        try:
            done, refused = rt.keystore.rewrap_step(max(1, int(rt.settings.key_rewrap_per_second)))
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            log.warning("data key re-wrap skipped: %s", type(exc).__name__)
            return
        if done or refused:
            log.info("data keys: %d re-wrapped, %d refused by the KMS", done, refused)

    _last_anchor = 0.0

    @timer(interval=1)
    def anchor_audit_chains(self) -> None:
        """Every ONTRACK_AUDIT_ANCHOR_SECONDS: seal and anchor the audit chains of at most
        ONTRACK_AUDIT_ANCHOR_BATCH tenant databases, the least recently visited first."""
        rt = self.platform
        now = time.monotonic()
        if now - IdentityWorker._last_anchor < rt.settings.audit_anchor_seconds:
            return
        IdentityWorker._last_anchor = now

        def connect(service: str, slug: str, placement: str) -> psycopg.Connection:
            conninfo = rt.clusters.tenant_conninfo(service, slug, placement)
            return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)

        c = rt.control
        control_conninfo = rt.clusters.role_conninfo(
            c.placement, c.names.control_database, c.names.control_role
        )
        try:
            with psycopg.connect(control_conninfo, autocommit=True, connect_timeout=5) as control:
                done = anchor.tick(control, connect, rt.settings.audit_anchor_batch)
        except psycopg.Error as exc:
            log.warning("audit anchoring skipped: %s", type(exc).__name__)
            return
        if done.anchored or done.broken:
            log.info(
                "audit: %d chains visited, %d anchored, %d entries sealed, %d broken",
                done.visited,
                done.anchored,
                done.sealed,
                len(done.broken),
            )

    # -- the mail outbox (identity/signin/mail.py) ------------------------------------------

    _mail_plan = mail_rules.VisitPlan()
    _last_mail_poll = 0.0

    def _deliver(self, info) -> mail.Delivered:
        rt = self.platform
        s = rt.settings
        plan = mail_rules.RetryPlan(
            s.mail_retry_base_seconds, s.mail_retry_max_seconds, s.mail_max_attempts
        )
        return mail.deliver_due(
            lambda: rt.dbs.unit_of_work(info), rt.fields, info, Smtp(s).send, plan
        )

    @on
    def handle_mail_queued(self, event: ev.Event) -> None:
        """A new message waits: send the tenant's due mail now (the poll covers failures)."""
        rt = self.platform
        if not Smtp(rt.settings).configured:
            return
        info = rt.directory.get(event.tenant)
        if info is None or info.status not in ("active", "suspended"):
            return
        done = self._deliver(info)
        IdentityWorker._mail_plan.visited((info.placement, info.slug), None, done.next_due)

    @timer(interval=1)
    def deliver_mail(self) -> None:
        """Every ONTRACK_MAIL_POLL_SECONDS: send due mail of every tenant database that may
        hold some (mail_rules.VisitPlan), retries included."""
        rt = self.platform
        now = time.monotonic()
        if now - IdentityWorker._last_mail_poll < rt.settings.mail_poll_seconds:
            return
        IdentityWorker._last_mail_poll = now
        if not Smtp(rt.settings).configured:
            return
        plan = IdentityWorker._mail_plan
        for placement in rt.clusters.names:
            try:
                databases = rt.provisioner.tenant_database_inserts(placement)
            except Exception as exc:  # noqa: BLE001 - one cluster down: the others still send
                log.warning("mail: cluster %s unavailable: %s", placement, type(exc).__name__)
                continue
            for slug, inserts in databases.items():
                key = (placement, slug)
                if not plan.due(key, inserts, datetime.now(UTC)):
                    continue
                try:
                    info = rt.directory.get(slug)
                    if (
                        info is None
                        or info.placement != placement
                        or info.status
                        not in (
                            "active",
                            "suspended",
                        )
                    ):
                        continue
                    done = self._deliver(info)
                except Exception as exc:  # noqa: BLE001 - still due: the next poll tries again
                    log.warning("mail of %s not delivered: %s", slug, type(exc).__name__)
                    plan.forget(key)
                    continue
                plan.visited(key, inserts, done.next_due)

    def sweep_all(self, rt) -> int:
        with rt.control.uow() as u:
            sent = outbox.sweep(u.conn, rt.publisher, min_age=5.0)
        return sent + super().sweep_all(rt)


def main() -> None:
    entry.worker_main("identity", IdentityWorker, api.bootstrap, deployment=DEPLOYMENT)


if __name__ == "__main__":
    main()
