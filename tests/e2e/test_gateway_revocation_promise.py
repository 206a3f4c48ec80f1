"""End to end, the promise of docs/gateway.md ("Revocation within a second") as it is worded:
"the first request after the revoke call returns is refused at every worker".

Every worker of the shared gateway holds the token in its cache (a second request was served
from it); the revoke call is made to identity directly, so no worker learns of it but through
identity's event; then each worker's very first request, sent on all of them at once, must be
401. Several rounds, since a promise about the first request is a promise about a race.
"""

from __future__ import annotations

import time

import pytest

from ontrackio.gateway.settings import GatewaySettings
from ontrackio.identity.v1 import access_pb2 as apb
from tests.e2e.test_gateway_kit import (  # noqa: F401 - gateway and tenant_a are fixtures
    Conn,
    _read_reply,
    access_stub,
    gateway_fixture,
    make_token,
    new_source,
    request_bytes,
    tenant_a_fixture,
)
from tests.helpers import md

pytestmark = pytest.mark.e2e

ROUNDS = 5
TOKEN_TTL = GatewaySettings.model_fields["token_cache_seconds"].default


def one_connection_per_worker(port: int) -> dict[str, Conn]:
    """Keep-alive connections, one to each gateway worker (a connection stays on one)."""
    conns: dict[str, Conn] = {}
    for _ in range(80):
        c = Conn(port, new_source())
        worker = c.send("GET", "/healthz", "localhost").json()["worker"]
        if worker in conns:
            c.close()
        else:
            conns[worker] = c
        if len(conns) >= 2:
            break
    assert len(conns) >= 2, "expected several gateway workers"
    return conns


def exchange(c: Conn, request: bytes) -> int:
    c.sock.sendall(request)
    return _read_reply(c.sock, c.buf).status


def test_the_first_request_after_the_revoke_call_returns_is_refused_at_every_worker(
    gateway, channels, tenant_a
):
    conns = one_connection_per_worker(gateway.port)
    try:
        for _ in range(ROUNDS):
            token_id, token = make_token(channels, tenant_a, "api:read")
            request = request_bytes(
                "GET",
                "/api/v1/assets?page_size=1",
                gateway.host(tenant_a),
                [("Authorization", f"Bearer {token}")],
            )
            cached_at = time.monotonic()
            for worker, c in conns.items():
                for _ in range(2):  # looked up, then served from the worker's cache
                    assert exchange(c, request) == 200, worker
            access_stub(channels).RevokeToken(
                apb.RevokeTokenRequest(id=token_id), metadata=md(tenant_a), timeout=10
            )
            for c in conns.values():  # the first request at every worker, all sent at once
                c.sock.sendall(request)
            first = {w: _read_reply(c.sock, c.buf).status for w, c in conns.items()}
            # Still inside the TTL: only the revocation event can explain a refusal.
            assert time.monotonic() - cached_at < TOKEN_TTL
            assert set(first.values()) == {401}, first
    finally:
        for c in conns.values():
            c.close()
