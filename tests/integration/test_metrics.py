"""Every api and worker process exposes Prometheus metrics an on-call engineer needs:
calls by method and status, latency, pool usage, events handled and their lag, DLQ depth."""

from __future__ import annotations

import urllib.request

from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md


def scrape(system, process: str) -> str:
    port = system.ports[f"{process}-metrics"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def value(text: str, prefix: str) -> float:
    """Sum of the samples whose line starts with `prefix` (name and labels)."""
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_api_and_worker_metrics(system, channels):
    slug = unique("m")
    create_tenant(channels, slug)
    users = igrpc.UserServiceStub(channels["identity"])
    users.CreateUser(
        ipb.CreateUserRequest(email=f"{slug}@example.com"), metadata=md(slug), timeout=5
    )
    try:
        users.GetUser(ipb.GetUserRequest(id="nope"), metadata=md(slug), timeout=5)
    except Exception:  # noqa: BLE001 - the INVALID_ARGUMENT is what is counted
        pass

    api = scrape(system, "identity-api")
    ok = 'ontrack_grpc_requests_total{code="OK",method="CreateUser",service="identity"}'
    bad = 'ontrack_grpc_requests_total{code="INVALID_ARGUMENT",method="GetUser",service="identity"}'
    assert value(api, ok) >= 1 and value(api, bad) >= 1
    assert value(api, 'ontrack_grpc_request_seconds_count{method="CreateUser"') >= 1
    assert value(api, 'ontrack_pool_connections_max{role="api",service="identity"}') == 3
    assert 'ontrack_relay_pending_batches{role="api",service="identity"}' in api

    def handled():
        text = scrape(system, "privacy-worker")
        applied = (
            'ontrack_events_handled_total{outcome="applied",service="privacy",'
            'type="identity.user_created"}'
        )
        return value(text, applied) >= 1 and text

    worker = eventually(handled, timeout=20)
    assert (
        value(
            worker,
            'ontrack_event_lag_seconds_count{service="privacy",type="identity.user_created"}',
        )
        >= 1
    )
    assert "ontrack_dlq_messages " in worker
