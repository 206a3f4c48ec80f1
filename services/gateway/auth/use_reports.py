"""Reporting a credential's use to identity (a token's last use, a session's activity):
at most once per ``every`` seconds per credential, in the background, so a request never
waits for it.

A report that could not be made (``send`` returned False) is tried again at the next use
rather than after ``every``. The memory of when each credential was last reported is
bounded: past ``max_entries`` it is cleared, which at worst reports some uses early."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ontrackio.gateway.client_ip import IPAddress

# send(tenant, credential id, client address) -> whether the use was recorded
Send = Callable[[str, str, str], Awaitable[bool]]


class UseReporter:
    def __init__(self, send: Send, every: float, max_entries: int, clock=time.monotonic) -> None:
        self.send = send
        self.every = every
        self.max_entries = max_entries
        self.clock = clock
        self._reported: dict[str, float] = {}
        self._background: set[asyncio.Task] = set()

    def used(self, tenant: str, credential_id: str, client_ip: IPAddress | None) -> None:
        """A request just used the credential: report it unless reported lately."""
        now = self.clock()
        if now - self._reported.get(credential_id, -1e18) < self.every:
            return
        if len(self._reported) > self.max_entries:
            self._reported.clear()
        self._reported[credential_id] = now
        task = asyncio.create_task(self._report(tenant, credential_id, str(client_ip or "")))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _report(self, tenant: str, credential_id: str, address: str) -> None:
        if not await self.send(tenant, credential_id, address):
            self._reported.pop(credential_id, None)
