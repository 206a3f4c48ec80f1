"""Every api and worker process exposes Prometheus metrics an on-call engineer needs:
calls by method and status, latency, pool usage, events handled and their lag, DLQ depth.

Counters are session-wide (earlier tests moved them too), so each check compares what one
request changed: a scrape before, a scrape after, and the difference."""

from __future__ import annotations

import grpc
import pytest

from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md
from tests.prom import Scrape


def scrape(system, process: str) -> Scrape:
    return Scrape.fetch(system.ports[f"{process}-metrics"])


def test_an_api_counts_each_call_by_method_and_status(system, channels):
    slug = unique("m")
    create_tenant(channels, slug)
    users = igrpc.UserServiceStub(channels["identity"])
    before = scrape(system, "identity-api")
    users.CreateUser(
        ipb.CreateUserRequest(email=f"{slug}@example.com"), metadata=md(slug), timeout=5
    )
    with pytest.raises(grpc.RpcError) as refused:
        users.GetUser(ipb.GetUserRequest(id="nope"), metadata=md(slug), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    after = scrape(system, "identity-api")
    calls = "ontrack_grpc_requests_total"
    assert after.rise(before, calls, service="identity", method="CreateUser", code="OK") == 1
    assert (
        after.rise(before, calls, service="identity", method="GetUser", code="INVALID_ARGUMENT")
        == 1
    )
    seconds = "ontrack_grpc_request_seconds_count"
    assert after.rise(before, seconds, service="identity", method="CreateUser") == 1
    assert after.value("ontrack_pool_connections_max", role="api", service="identity") == 3
    assert after.has("ontrack_relay_pending_batches", role="api", service="identity")


def test_a_worker_counts_the_event_it_applies_and_its_lag_and_serves_the_dlq_depth(
    system, channels
):
    slug = unique("mw")
    create_tenant(channels, slug)
    users = igrpc.UserServiceStub(channels["identity"])
    before = scrape(system, "privacy-worker")
    users.CreateUser(
        ipb.CreateUserRequest(email=f"{slug}@example.com"), metadata=md(slug), timeout=5
    )
    labels = {"service": "privacy", "type": "identity.user_created"}

    def applied() -> Scrape | None:
        now = scrape(system, "privacy-worker")
        rose = now.rise(before, "ontrack_events_handled_total", outcome="applied", **labels)
        return now if rose else None

    after = eventually(applied, timeout=20)
    assert after.rise(before, "ontrack_events_handled_total", outcome="applied", **labels) == 1
    assert after.rise(before, "ontrack_event_lag_seconds_count", **labels) == 1
    assert after.has("ontrack_dlq_messages")  # the DLQ depth gauge is served
