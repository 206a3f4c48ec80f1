"""The mail outbox of one tenant: messages written in the transaction of the change they
announce, sent later by identity's worker (worker.py: woken by ``identity.mail_queued``,
and every ``ONTRACK_MAIL_POLL_SECONDS`` for retries).

A message is never lost to an SMTP outage: it stays ``pending`` and is tried again with
backoff (mail_rules.RetryPlan) until it is ``sent`` or ``dead``. A worker takes a message
by leasing it (``leased_until``) in a short transaction of its own, sends it outside any
transaction, and records the outcome; a worker that dies mid-send leaves a lease that runs
out, and the message is sent again (at least once, like the event outbox). The body holds
the invitation link, a secret: it is sealed with the tenant's data key and erased once the
message is sent or dead.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.directory import TenantInfo
from ontrackio.core.keys.envelope import FieldCipher
from ontrackio.identity.signin import mail_rules
from ontrackio.identity.signin.smtp import Outgoing, SendFailed
from ontrackio.identity.v1 import signin_pb2

log = logging.getLogger(__name__)

MAIL_DELIVERIES = Counter(
    "ontrack_mail_deliveries",
    "Attempts to hand a message of the mail outbox to the SMTP server.",
    ["outcome"],  # sent | retry | dead
)
TABLE, COLUMN = "mail_outbox", "body"
LEASE = timedelta(minutes=2)
BATCH = 20


def enqueue(
    u: UnitOfWork,
    fields: FieldCipher,
    info: TenantInfo,
    mail: Outgoing,
    *,
    invitation_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Write ``mail`` in the unit's transaction and wake the worker (after the commit)."""
    mail_id = uuid.uuid4()
    sealed = fields.encrypt_text(info, TABLE, COLUMN, mail_id, mail.body)
    u.conn.execute(
        "INSERT INTO mail_outbox (id, recipient, subject, body, invitation_id)"
        " VALUES (%s, %s, %s, %s, %s)",
        (mail_id, mail.recipient, mail.subject, sealed, invitation_id),
    )
    u.emit("identity.mail_queued", signin_pb2.MailQueued(mail_id=str(mail_id)))
    return mail_id


@dataclass(frozen=True)
class Delivered:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    next_due: datetime | None = None  # the earliest pending message's next attempt


def _claim(u: UnitOfWork, now: datetime) -> list[tuple]:
    return u.conn.execute(
        "UPDATE mail_outbox SET leased_until = %s, attempts = attempts + 1"
        " WHERE id IN (SELECT id FROM mail_outbox WHERE state = 'pending'"
        "   AND next_attempt_at <= %s AND (leased_until IS NULL OR leased_until <= %s)"
        "   ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)"
        " RETURNING id, recipient, subject, body, attempts",
        (now + LEASE, now, now, BATCH),
    ).fetchall()


def deliver_due(
    unit_of_work: Callable[[], AbstractContextManager[UnitOfWork]],
    fields: FieldCipher,
    info: TenantInfo,
    send: Callable[[Outgoing], None],
    plan: mail_rules.RetryPlan,
) -> Delivered:
    """Send the tenant's due messages (a batch at a time) and record each outcome."""
    sent = retried = dead = 0
    while True:
        now = datetime.now(UTC)
        with unit_of_work() as u:
            claimed = _claim(u, now)
        for mail_id, recipient, subject, sealed, attempts in claimed:
            outcome = _attempt(fields, info, send, mail_id, recipient, subject, sealed)
            with unit_of_work() as u:
                if outcome is None:
                    u.conn.execute(
                        "UPDATE mail_outbox SET state = 'sent', sent_at = now(), body = NULL,"
                        " leased_until = NULL, last_error = '' WHERE id = %s",
                        (mail_id,),
                    )
                    sent += 1
                    MAIL_DELIVERIES.labels("sent").inc()
                    continue
                state, next_at = plan.after_failure(
                    attempts, datetime.now(UTC), permanent=outcome.permanent
                )
                u.conn.execute(
                    "UPDATE mail_outbox SET state = %s, next_attempt_at = coalesce(%s,"
                    " next_attempt_at), leased_until = NULL, last_error = %s,"
                    " body = CASE WHEN %s THEN NULL ELSE body END WHERE id = %s",
                    (state, next_at, str(outcome)[:200], state == mail_rules.DEAD, mail_id),
                )
            if state == mail_rules.DEAD:
                dead += 1
                MAIL_DELIVERIES.labels("dead").inc()
                log.warning("mail %s of %s is dead: %s", mail_id, info.slug, outcome)
            else:
                retried += 1
                MAIL_DELIVERIES.labels("retry").inc()
                log.info(
                    "mail %s of %s: %s; tried again at %s", mail_id, info.slug, outcome, next_at
                )
        if len(claimed) < BATCH:
            break
    with unit_of_work() as u:
        row = u.conn.execute(
            "SELECT min(greatest(next_attempt_at, coalesce(leased_until, next_attempt_at)))"
            " FROM mail_outbox WHERE state = 'pending'"
        ).fetchone()
    return Delivered(sent, retried, dead, row[0] if row else None)


def _attempt(
    fields: FieldCipher,
    info: TenantInfo,
    send: Callable[[Outgoing], None],
    mail_id: uuid.UUID,
    recipient: str,
    subject: str,
    sealed: bytes | None,
) -> SendFailed | None:
    """None when sent, else the failure (a body that does not open is a permanent one)."""
    if sealed is None:
        return SendFailed("the message has no body", permanent=True)
    try:
        body = fields.decrypt_text(info, TABLE, COLUMN, mail_id, bytes(sealed))
    except Exception as exc:  # noqa: BLE001 - a key outage is temporary, a bad blob is not
        return SendFailed(type(exc).__name__, permanent="Unreadable" in type(exc).__name__)
    try:
        send(Outgoing(recipient, subject, body))
    except SendFailed as exc:
        return exc
    return None


def states_of(u: UnitOfWork, invitation_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The state of the newest message of each invitation."""
    rows = u.conn.execute(
        "SELECT DISTINCT ON (invitation_id) invitation_id, state FROM mail_outbox"
        " WHERE invitation_id = ANY(%s) ORDER BY invitation_id, created_at DESC",
        (invitation_ids,),
    ).fetchall()
    return {r[0]: r[1] for r in rows}
