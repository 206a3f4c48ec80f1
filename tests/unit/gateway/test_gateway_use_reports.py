"""A credential's use is reported at most once per interval, in the background; a report
that failed is tried again at the next use."""

from __future__ import annotations

import asyncio

from ontrackio.gateway.auth.use_reports import UseReporter


def test_uses_are_reported_once_per_interval_and_a_failed_report_is_retried():
    sent: list[tuple[str, str, str]] = []
    answers = [False, True, True]
    now = [100.0]

    async def send(tenant: str, credential_id: str, address: str) -> bool:
        sent.append((tenant, credential_id, address))
        return answers.pop(0)

    async def scenario():
        r = UseReporter(send, every=60, max_entries=10, clock=lambda: now[0])

        async def use(cid="t1"):
            r.used("acme", cid, None)
            await asyncio.sleep(0)  # let the background report run
            await asyncio.sleep(0)

        await use()  # reported, and the report fails
        await use()  # so the next use reports again (succeeds)
        await use()  # within the interval: not reported
        now[0] += 61
        await use()  # after it: reported
        return r

    asyncio.run(scenario())
    assert sent == [("acme", "t1", "")] * 3


def test_the_memory_of_reports_is_bounded():
    sent = []

    async def send(tenant, credential_id, address):
        sent.append(credential_id)
        return True

    async def scenario():
        r = UseReporter(send, every=60, max_entries=3)
        for i in range(10):
            r.used("acme", f"t{i}", None)
        await asyncio.sleep(0)
        return r

    r = asyncio.run(scenario())
    assert len(sent) == 10 and len(r._reported) <= 4
