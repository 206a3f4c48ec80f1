"""Fault isolation. Fault tests (marked `fault`) break parts of the session's running
system on purpose: they close its broker connections, kill its database backends. Two
rules keep a fault from spilling into the tests that share that system:

- fault tests run last, in the order they were collected (`pytest_collection_modifyitems`,
  installed by tests/e2e/conftest.py; it sees every item of the session, whichever
  directory it comes from), so a slow recovery can reach other fault tests only;
- after each fault test that used the session's system (`recovers_from_its_fault`, autouse
  there), the system must be whole again within RECOVERY_SECONDS: every process running
  and ready, every shared queue of the deployment's virtual host consumed by at least as
  many consumers as before the test, and as many consumers in all. If not, that test fails
  at its teardown naming what did not come back, instead of some later test failing for a
  reason it cannot show.
"""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

import pytest

from ontrackio.devtools import infra
from tests.helpers import eventually_passes

RECOVERY_SECONDS = 60


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every `fault` test after every other test; each group keeps its own order."""
    faults = [item for item in items if item.get_closest_marker("fault") is not None]
    if faults:
        others = [item for item in items if item.get_closest_marker("fault") is None]
        items[:] = others + faults


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names ("/" when it names none)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def consumers(vhost: str) -> dict[str, tuple[int, bool]]:
    """Queue name -> (number of consumers, exclusive), for every queue of `vhost`."""
    out = infra.rabbitmqctl(
        "list_queues", "--quiet", "-p", vhost, "name", "consumers", "exclusive",
        "--formatter", "json",
    )  # fmt: skip
    if out.returncode != 0:
        raise AssertionError(f"rabbitmqctl list_queues failed: {out.stderr.strip()}")
    return {
        q["name"]: (int(q["consumers"]), bool(q["exclusive"]))
        for q in json.loads(out.stdout or "[]")
    }


def missing_consumers(
    before: dict[str, tuple[int, bool]], now: dict[str, tuple[int, bool]]
) -> list[str]:
    """What `now` lacks compared with `before`: shared queues with fewer consumers, and
    fewer consumers in all. An exclusive queue (a gateway worker's invalidation queue)
    goes with its connection and comes back under a new name, so it counts in the total
    only."""
    lacking = [
        f"{name}: {now.get(name, (0, False))[0]} of {n} consumers"
        for name, (n, exclusive) in sorted(before.items())
        if not exclusive and now.get(name, (0, False))[0] < n
    ]
    total_before = sum(n for n, _ in before.values())
    total_now = sum(n for n, _ in now.values())
    if total_now < total_before:
        lacking.append(f"{total_now} of {total_before} consumers in all")
    return lacking


def assert_whole(system, before: dict[str, tuple[int, bool]] | None) -> None:
    exited = {n: p.returncode for n, p in system.procs.items() if p.poll() is not None}
    if exited:  # no waiting helps here
        pytest.fail(f"processes exited during the fault test: {exited}", pytrace=False)
    not_ready = [name for name in system.procs if not system.ready(name)]
    assert not not_ready, f"not ready: {', '.join(not_ready)}"
    if before is not None:
        lacking = missing_consumers(before, consumers(vhost_of(system.amqp_url)))
        assert not lacking, "; ".join(lacking)


@pytest.fixture(autouse=True)
def recovers_from_its_fault(request):
    """For a `fault` test on the session's system: the system is whole again afterwards
    (module docstring). Consumers are compared where rabbitmqctl can list them; the
    testcontainers path without a local rabbitmqctl checks the processes only."""
    if request.node.get_closest_marker("fault") is None or "system" not in request.fixturenames:
        yield
        return
    system = request.getfixturevalue("system")
    before = consumers(vhost_of(system.amqp_url)) if infra.can_manage_vhosts() else None
    yield
    try:
        eventually_passes(
            lambda: assert_whole(system, before), timeout=RECOVERY_SECONDS, interval=0.5
        )
    except AssertionError as exc:
        pytest.fail(
            f"the system did not recover from {request.node.name} within {RECOVERY_SECONDS} s "
            f"({exc}); later tests on it would fail for this test's fault",
            pytrace=False,
        )
