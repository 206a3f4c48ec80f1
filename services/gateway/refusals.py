"""Refused attempts reported to identity's audit trail, without waiting.

The gateway refuses some attempts itself (admin allowlist denials, missing scopes, refused
tokens); each becomes an entry through ``AuditService.RecordRefusal``: fire-and-forget, at
most ``rate`` per second per tenant from one gateway worker, so a flood of refused requests
costs identity a bounded amount of work (identity limits again).
"""

from __future__ import annotations

import asyncio
import logging

from ontrackio.core import telemetry
from ontrackio.core.audit import refusals as refusal_rules
from ontrackio.core.audit.origin import CLIENT_ADDRESS_KEY, REQUEST_ID_KEY
from ontrackio.core.grpcserver import TENANT_METADATA
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.identity.v1 import audit_pb2 as pb

log = logging.getLogger(__name__)


class RefusalReporter:
    """Reports refused attempts to identity without waiting (one gateway worker's share).

    ``report`` returns at once; at most ``rate`` reports per second per tenant (burst
    ``burst``) leave this worker, the rest are counted in ``dropped``. Failures of the call
    are logged at debug level and otherwise ignored: auditing a refusal never delays or
    fails the response. Call from the worker's event loop."""

    ACTIONS = refusal_rules.ACTIONS

    def __init__(self, upstream, rate: float = 5.0, burst: float = 20.0) -> None:
        self.upstream = upstream
        self.limiter = TokenBucketLimiter(rate, burst, max_keys=10_000)
        self.dropped = 0
        self._tasks: set[asyncio.Task] = set()

    def report(
        self,
        tenant: str,
        action: str,
        *,
        actor: str | None = None,
        target: str = "",
        reason: str = "",
        client_address: str = "",
        request_id: str = "",
    ) -> bool:
        """Send one refusal; False when it was dropped by the rate limit."""
        if action not in self.ACTIONS:
            raise ValueError(f"unknown refusal action {action!r}")
        if not self.limiter.hit(tenant).allowed:
            self.dropped += 1
            return False
        request = pb.RecordRefusalRequest(
            action=action, actor=actor or "", target=target[:200], reason=reason[:200]
        )
        task = asyncio.get_running_loop().create_task(
            self._send(tenant, request, client_address, request_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _send(self, tenant, request, client_address: str, request_id: str) -> None:
        metadata = [
            *telemetry.inject().items(),
            (TENANT_METADATA, tenant),
            *(
                (k, v)
                for k, v in ((CLIENT_ADDRESS_KEY, client_address), (REQUEST_ID_KEY, request_id))
                if v
            ),
        ]
        try:
            await self.upstream.audit.RecordRefusal(
                request, timeout=self.upstream.deadline, metadata=metadata
            )
        except Exception as exc:  # noqa: BLE001 - fire-and-forget: never affects the caller
            log.debug("refusal report for %s failed: %s", tenant, type(exc).__name__)

    async def drain(self, timeout: float = 2.0) -> None:
        """Wait (bounded) for reports in flight, e.g. before the worker stops."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
