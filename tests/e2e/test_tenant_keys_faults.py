"""Tenant keys under faults (run last, tests/fault_isolation.py):

- the worker re-encrypting a tenant's values after a data key rotation is killed (SIGKILL)
  in the middle: every value stays readable meanwhile, and once the worker is back the
  redelivered event finishes the job;
- the KMS becomes unreachable: a tenant whose keys are not cached fails closed with cause
  "unreachable" (a key's test for BYO-KMS too), and recovers by itself when it is back.
"""

from __future__ import annotations

import os
import signal

import grpc
import pytest

from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import keys_pb2 as kpb
from ontrackio.identity.v1 import keys_pb2_grpc as kgrpc
from ontrackio.inventory.v1 import inventory_pb2 as vpb
from ontrackio.inventory.v1 import inventory_pb2_grpc as vgrpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import gateway_fixture, make_token  # noqa: F401 - fixture
from tests.e2e.test_tenant_keys import KEY_UNAVAILABLE, read_key, stored
from tests.helpers import create_tenant, eventually, eventually_passes, md

pytestmark = pytest.mark.fault
ROWS = 1200  # at the test stack's 300 rows/s, about four seconds of re-encryption


def versions(settings, slug: str, ids: list[str]) -> list[int]:
    return [int.from_bytes(stored(settings, slug, i)[1:5], "big") for i in ids]


def kill(system, name: str) -> None:
    """SIGKILL the process group of `name`: no shutdown, no ack of what it was doing."""
    os.killpg(system.procs[name].pid, signal.SIGKILL)
    system.stop([name])


def test_a_worker_killed_while_reencrypting_resumes_where_it_stopped(system, settings, channels):
    slug = unique("kr")
    create_tenant(channels, slug)
    assets = vgrpc.AssetServiceStub(channels["inventory"])
    ids = [
        assets.CreateAsset(
            vpb.CreateAssetRequest(name=f"pc {i}", kind="hardware", recovery_key=f"key-{i}"),
            metadata=md(slug),
        ).id
        for i in range(ROWS)
    ]
    keys = kgrpc.KeyServiceStub(channels["identity"])
    keys.RotateDataKeys(kpb.RotateDataKeysRequest(), metadata=md(slug))

    def halfway():
        v = versions(settings, slug, ids[::50])
        return 2 in v and 1 in v

    eventually(halfway, timeout=30, interval=0.05)
    kill(system, "inventory-worker")
    left = versions(settings, slug, ids)
    assert 1 in left and 2 in left, "the kill came before or after the job, not in it"
    for i in (0, ROWS // 2, ROWS - 1):  # both versions read, while the job is down
        got = assets.GetRecoveryKey(vpb.GetAssetRequest(id=ids[i]), metadata=md(slug))
        assert got.recovery_key == f"key-{i}"
    system.start(["inventory-worker"])
    system.wait_ready()
    eventually(lambda: set(versions(settings, slug, ids)) == {2}, timeout=60)
    for i in (0, ROWS // 2, ROWS - 1):
        got = assets.GetRecoveryKey(vpb.GetAssetRequest(id=ids[i]), metadata=md(slug))
        assert got.recovery_key == f"key-{i}"


def test_an_unreachable_kms_fails_tenants_closed_and_they_recover_when_it_is_back(
    system, settings, channels, gateway, kms
):
    slug = unique("ku")
    create_tenant(channels, slug, tier=ipb.TIER_ENTERPRISE)
    token = make_token(channels, slug)[1]
    r = gateway.call(
        "POST", "/api/v1/assets", slug, token,
        {"name": "srv", "kind": "hardware", "recovery_key": "k-1"},
    )  # fmt: skip
    assert r.status == 201, r
    asset = r.json()["id"]
    keys = kgrpc.KeyServiceStub(channels["identity"])
    arn = kms.create_key()
    with kms.unreachable():
        # A key's test needs the KMS: the switch is refused while it does not answer.
        with pytest.raises(grpc.RpcError) as refused:
            keys.SetTenantKey(kpb.SetTenantKeyRequest(key_arn=arn), metadata=md(slug))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "unreachable" in refused.value.details()

        def fails_closed():
            r = read_key(gateway, (slug, token), asset)
            assert r.status == 503, r
            return r

        body = eventually_passes(fails_closed, timeout=30).json()
        assert body["type"] == KEY_UNAVAILABLE and "unreachable" in body["detail"]

    def served():
        r = read_key(gateway, (slug, token), asset)
        assert r.status == 200, r
        return r

    assert eventually_passes(served, timeout=30).json()["recovery_key"] == "k-1"
