"""Helpers for tests that drive the running system over gRPC."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc

from ontrackio.core.grpcclient import tenant as tenant_md
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Call `check` until it returns a truthy value, and return that value: the way a test
    waits for the system (never a bare sleep).

    A falsy result or an `Exception` (an `AssertionError` from an asserting function
    included) means "not yet"; at `timeout` seconds the last one is reported: the last
    exception re-raised with a note saying how long it was retried, or an AssertionError
    naming the last falsy value. `BaseException`s that are not `Exception`s
    (KeyboardInterrupt, SystemExit, pytest.fail and pytest-timeout's interruption) are never
    retried. `check` is called at least once, and once more at the deadline; a single call
    is not interrupted, so bound the calls it makes (pass timeouts to RPCs). For an asserting
    function that returns nothing, use `eventually_passes`.
    """
    return _retry(check, bool, timeout, interval)


def eventually_passes(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """As `eventually`, for a check that asserts: done as soon as `check` returns without
    raising, whatever it returns (None included); returns that."""
    return _retry(check, lambda _: True, timeout, interval)


def _retry(check: Callable[[], T], done: Callable[[T], bool], timeout, interval) -> T:
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - "not yet": retried until the deadline
            last: object = exc
        else:
            if done(value):
                return value
            last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            said = f"still failing after {timeout} s ({attempts} attempts)"
            if isinstance(last, Exception):
                last.add_note(f"eventually: {said}")
                raise last
            raise AssertionError(f"eventually: {said}; the last result was {last!r}")
        time.sleep(min(interval, remaining))


def create_tenant(channels, slug: str, tier=ipb.TIER_BUSINESS, domains=(), timeout=30.0):
    stub = igrpc.TenantServiceStub(channels["identity"])
    stub.CreateTenant(
        ipb.CreateTenantRequest(slug=slug, name=f"Tenant {slug}", tier=tier, domains=list(domains)),
        timeout=10,
    )
    return eventually(
        lambda: (
            (t := stub.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5)).status
            == ipb.TENANT_STATUS_ACTIVE
            and t
        ),
        timeout=timeout,
    )


class CallerChannel(grpc.Channel):
    """A channel that makes each call over the channel of the identity `pick(method)` names
    (one mutual-TLS channel per identity, each presenting its own certificate)."""

    def __init__(self, by_identity: dict[str, grpc.Channel], pick: Callable[[str], str]):
        self._by_identity, self._pick = by_identity, pick

    def _for(self, method) -> grpc.Channel:
        name = method.decode() if isinstance(method, bytes) else method
        return self._by_identity[self._pick(name)]

    def unary_unary(self, method, *args, **kwargs):
        return self._for(method).unary_unary(method, *args, **kwargs)

    def unary_stream(self, method, *args, **kwargs):
        return self._for(method).unary_stream(method, *args, **kwargs)

    def stream_unary(self, method, *args, **kwargs):
        return self._for(method).stream_unary(method, *args, **kwargs)

    def stream_stream(self, method, *args, **kwargs):
        return self._for(method).stream_stream(method, *args, **kwargs)

    def subscribe(self, callback, try_to_connect=False):
        for c in self._by_identity.values():
            c.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback):
        for c in self._by_identity.values():
            c.unsubscribe(callback)

    def close(self):
        for c in self._by_identity.values():
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def md(slug: str):
    return tenant_md(slug)


def ontrack(
    system, *args: str, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run the operator CLI (`--json`) against the test deployment (``input``: its stdin)."""
    return subprocess.run(
        [sys.executable, "-m", "ontrackio.cli.main", "--json", *args],
        env=system.env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def extra_gateway(system, name: str, ready_dir, **env: str) -> Iterator[int]:
    """An extra gateway process on a port of its own with `env` overrides, ready when the
    block starts and stopped when it ends; yields its port."""
    import os

    from ontrackio.devtools.stack import ROOT, free_port

    port = free_port()
    full = {
        **system.env(),
        "ONTRACK_READY_DIR": str(ready_dir),
        "ONTRACK_GATEWAY_PORT": str(port),
        **env,
    }
    log = open(system.run_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ontrackio.gateway.main"],
        env=full,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        eventually(lambda: os.path.exists(os.path.join(ready_dir, "gateway.ready")), timeout=60)
        yield port
    finally:
        stop_process(proc, log)


def stop_process(proc, log) -> None:
    proc.terminate()
    proc.wait(15)
    log.close()
