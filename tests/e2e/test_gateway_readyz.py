"""End to end: `/readyz` says whether identity is reachable (docs/gateway.md, Routes): 503
while it is not, 200 again once it is back, while `/healthz` (the process is up) stays 200.

The gateway under test is one of its own whose identity address is a relay the test cuts and
restores (tests/e2e/tcp_relay.py), so the shared stack's identity is never stopped.
"""

from __future__ import annotations

import pytest

from tests.e2e.tcp_relay import TcpRelay
from tests.e2e.test_gateway_kit import raw, request_bytes
from tests.helpers import eventually, extra_gateway

pytestmark = pytest.mark.e2e


def probe(port: int, path: str):
    return raw(port, request_bytes("GET", path, "localhost", close=True))


def test_readyz_is_503_while_identity_is_unreachable_and_200_once_it_is_back(system, tmp_path):
    with (
        TcpRelay(system.ports["identity"]) as relay,
        extra_gateway(
            system,
            "gateway-readyz",
            tmp_path,
            ONTRACK_IDENTITY_GRPC_PORT=str(relay.port),
            ONTRACK_GATEWAY_WORKERS="1",
        ) as port,
    ):
        # Positive control: identity reached through the relay (the only way this gateway has).
        eventually(lambda: probe(port, "/readyz").status == 200, timeout=30)
        assert relay.accepted >= 1

        relay.cut()
        down = eventually(lambda: (r := probe(port, "/readyz")).status == 503 and r, timeout=30)
        assert down.headers["content-type"] == "application/problem+json"
        assert down.headers["retry-after"] == "1"
        assert down.json()["status"] == 503
        assert probe(port, "/healthz").status == 200  # up, only not ready

        relay.restore()
        back = eventually(lambda: (r := probe(port, "/readyz")).status == 200 and r, timeout=30)
        assert back.json()["status"] == "ready"
