"""Tenant keys in the running system, through the gateway, against the KMS emulator (moto's
server behind a proxy that refuses as AWS does, devtools/kmsemulator.py):

- an encrypted field (an asset's recovery key) is stored as ciphertext and read back;
  a ciphertext copied to another row or another tenant does not decrypt;
- BYO-KMS: refused for a Business-tier tenant, switched for an Enterprise one after a test
  encrypt and decrypt, its data keys re-wrapped in the background;
- fail closed: a disabled or revoked customer key makes that tenant's encrypted fields
  answer 503 tenant-key-unavailable (its own problem type) while the other tenant keeps
  working; a metric and an audit entry record it; re-enabling recovers without a restart;
- data key rotation re-encrypts old values (progress in `ontrack tenant key show`);
- deleting a tenant destroys its wrapped keys (crypto-shredding).
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import psycopg
import pytest

from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import identity_pb2 as ipb
from tests.conftest import unique
from tests.e2e.test_gateway_kit import gateway_fixture, make_token  # noqa: F401 - fixture
from tests.helpers import create_tenant, eventually, eventually_passes, ontrack
from tests.prom import Scrape

KEY_UNAVAILABLE = "https://problems.ontrack.io/tenant-key-unavailable"
RECOVERY = "48-digit-recovery-{}-123456-654321-111111-222222"


@pytest.fixture(scope="module")
def business(channels, gateway):
    slug = unique("kb")
    create_tenant(channels, slug)
    return slug, make_token(channels, slug)[1]


@pytest.fixture(scope="module")
def enterprise(channels, gateway):
    slug = unique("ke")
    create_tenant(channels, slug, tier=ipb.TIER_ENTERPRISE)
    return slug, make_token(channels, slug)[1]


def new_asset(gateway, tenant, recovery: str | None = None):
    slug, token = tenant
    body = {"name": f"laptop {uuid.uuid4().hex[:6]}", "kind": "hardware"}
    if recovery is not None:
        body["recovery_key"] = recovery
    return gateway.call("POST", "/api/v1/assets", slug, token, body)


def read_key(gateway, tenant, asset_id: str):
    slug, token = tenant
    return gateway.call("GET", f"/admin/api/v1/assets/{asset_id}/recovery-key", slug, token)


def stored(settings, slug: str, asset_id: str) -> bytes:
    """The recovery key column as PostgreSQL holds it (read as the superuser)."""
    db = Names(settings.deployment, "inventory").tenant_database(slug)
    with psycopg.connect(settings.pg_dsn("main"), dbname=db, autocommit=True) as conn:
        return bytes(
            conn.execute("SELECT recovery_key FROM assets WHERE id = %s", (asset_id,)).fetchone()[0]
        )


def overwrite(settings, slug: str, asset_id: str, blob: bytes) -> None:
    db = Names(settings.deployment, "inventory").tenant_database(slug)
    with psycopg.connect(settings.pg_dsn("main"), dbname=db, autocommit=True) as conn:
        conn.execute("UPDATE assets SET recovery_key = %s WHERE id = %s", (blob, asset_id))


def audit_actions(settings, service: str, slug: str) -> list[str]:
    """Actions in the audit trail of `service`'s database of `slug` (read as the superuser)."""
    db = Names(settings.deployment, service).tenant_database(slug)
    with psycopg.connect(settings.pg_dsn("main"), dbname=db, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT action FROM audit.entries ORDER BY id")]


def refusals(system, cause: str) -> float:
    """Key refusals counted by the inventory api, summed over its series for `cause`."""
    port = system.ports["inventory-api-metrics"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        scrape = Scrape.parse(r.read().decode())
    return scrape.value("ontrack_tenant_key_refusals_total", service="inventory", cause=cause)


def test_an_encrypted_field_is_ciphertext_at_rest_and_reads_back(settings, gateway, business):
    secret = RECOVERY.format("a")
    r = new_asset(gateway, business, secret)
    assert r.status == 201, r
    asset = r.json()
    assert asset["has_recovery_key"] is True
    assert "recovery_key" not in asset
    blob = stored(settings, business[0], asset["id"])
    assert secret.encode() not in blob and blob[0] == 1  # format byte, then the version
    got = read_key(gateway, business, asset["id"])
    assert got.status == 200, got
    assert got.json() == {"asset_id": asset["id"], "recovery_key": secret}


def test_a_ciphertext_moved_to_another_row_or_tenant_does_not_decrypt(
    settings, channels, gateway, business
):
    # Tenants of their own: a value left unreadable on purpose stays under its old data key
    # version for good, so a later rotation of the module's tenants would never finish.
    slug = unique("km")
    create_tenant(channels, slug)
    mine = (slug, make_token(channels, slug)[1])
    third = unique("kt")
    create_tenant(channels, third)
    another = (third, make_token(channels, third)[1])
    one = new_asset(gateway, mine, RECOVERY.format("one")).json()
    two = new_asset(gateway, mine, RECOVERY.format("two")).json()
    other = new_asset(gateway, another, RECOVERY.format("other")).json()
    overwrite(settings, mine[0], two["id"], stored(settings, mine[0], one["id"]))
    moved = read_key(gateway, mine, two["id"])
    assert moved.status == 409, moved
    assert "cannot be read" in moved.json()["detail"]
    assert RECOVERY.format("one") not in moved.body.decode()
    overwrite(settings, another[0], other["id"], stored(settings, mine[0], one["id"]))
    across = read_key(gateway, another, other["id"])
    assert across.status == 409, across
    assert read_key(gateway, mine, one["id"]).json()["recovery_key"] == RECOVERY.format("one")


def test_byo_kms_is_refused_below_the_enterprise_tier(gateway, business, kms):
    slug, token = business
    r = gateway.call("PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": kms.create_key()})
    assert r.status == 409, r
    assert "Enterprise tier" in r.json()["detail"]
    got = gateway.call("GET", "/admin/api/v1/encryption", slug, token).json()
    assert got["customer_managed"] is False


def test_byo_kms_refuses_a_key_that_fails_its_test_and_one_in_another_region(
    gateway, enterprise, kms
):
    slug, token = enterprise
    disabled = kms.create_key()
    kms.disable(disabled)
    r = gateway.call("PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": disabled})
    assert r.status == 409, r
    assert "test encrypt and decrypt (disabled)" in r.json()["detail"]
    us = kms.create_key(region="us-east-1")
    r = gateway.call("PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": us})
    assert r.status == 400, r
    assert "us-east-1" in r.json()["detail"]
    alias = gateway.call(
        "PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": "alias/customer"}
    )
    assert alias.status == 400, alias


def test_a_customer_key_limited_to_its_tenant_cannot_be_named_by_another(
    channels, gateway, enterprise, kms
):
    """Every use of a customer's key names the tenant in its encryption context, so a key
    policy requiring that tenant's id (docs/keys.md) makes the key useless to any other
    tenant that names its ARN: the switch is refused at the key's test."""
    owner = unique("ko")
    create_tenant(channels, owner, tier=ipb.TIER_ENTERPRISE)
    owner_token = make_token(channels, owner)[1]
    tenant_id = gateway.call("GET", "/admin/api/v1/encryption", owner, owner_token).json()[
        "tenant_id"
    ]
    arn = kms.create_key()
    kms.require_context(arn, ontrack__tenant=tenant_id)
    slug, token = enterprise
    stolen = gateway.call("PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": arn})
    assert stolen.status == 409, stolen
    assert "access denied" in stolen.json()["detail"]
    own = gateway.call("PUT", "/admin/api/v1/encryption", owner, owner_token, {"key_arn": arn})
    assert own.status == 200, own
    asset = new_asset(gateway, (owner, owner_token), RECOVERY.format("own")).json()
    assert read_key(gateway, (owner, owner_token), asset["id"]).status == 200


@pytest.fixture(scope="module")
def customer_key(gateway, enterprise, kms):
    """The enterprise tenant switched to a key of its own, its data keys re-wrapped."""
    slug, token = enterprise
    before = new_asset(gateway, enterprise, RECOVERY.format("before")).json()
    arn = kms.create_key()
    r = gateway.call("PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": arn})
    assert r.status == 200, r
    assert r.json()["customer_managed"] is True and r.json()["key"] == arn

    def rewrapped():
        got = gateway.call("GET", "/admin/api/v1/encryption", slug, token).json()
        return got if got["state"] == "ready" and got["rewrapped"] == got["total"] else None

    done = eventually(rewrapped, timeout=30)
    assert done["total"] >= 1
    assert read_key(gateway, enterprise, before["id"]).json()["recovery_key"] == RECOVERY.format(
        "before"
    )
    return arn, before["id"]


def _take_away(kms, arn: str, how: str) -> None:
    {
        "disabled": kms.disable,
        "pending_deletion": kms.schedule_deletion,
        "access_denied": kms.revoke,
    }[how](arn)


def _give_back(kms, arn: str, how: str) -> None:
    if how == "pending_deletion":
        kms.cancel_deletion(arn)  # as in AWS, the key is disabled after a cancel
    if how == "access_denied":
        kms.grant(arn)
    else:
        kms.enable(arn)


@pytest.mark.parametrize("how", ["disabled", "pending_deletion", "access_denied"])
def test_an_unusable_customer_key_fails_that_tenant_closed_and_recovers_by_itself(
    system, settings, gateway, business, enterprise, customer_key, kms, how
):
    arn, asset_id = customer_key
    other = new_asset(gateway, business, RECOVERY.format("b")).json()
    _take_away(kms, arn, how)
    try:

        def refused():
            r = read_key(gateway, enterprise, asset_id)
            assert r.status == 503, r
            return r

        r = eventually_passes(refused, timeout=30)
        body = r.json()
        assert body["type"] == KEY_UNAVAILABLE
        assert body["title"] == "Tenant key unavailable"
        assert how.replace("_", " ") in body["detail"]
        assert r.headers["retry-after"]
        write = new_asset(gateway, enterprise, RECOVERY.format("new"))
        assert write.status == 503 and write.json()["type"] == KEY_UNAVAILABLE
        # the same tenant's unencrypted data, and the other tenant, are not affected
        assert gateway.call("GET", f"/api/v1/assets/{asset_id}", *enterprise).status == 200
        assert read_key(gateway, business, other["id"]).status == 200
        assert new_asset(gateway, business, RECOVERY.format("b2")).status == 201
        assert refusals(system, how) > 0
        eventually(lambda: "key.unavailable" in audit_actions(settings, "inventory", enterprise[0]))
    finally:
        _give_back(kms, arn, how)

    def served():
        r = read_key(gateway, enterprise, asset_id)
        assert r.status == 200, r
        return r

    assert eventually_passes(served, timeout=30).json()["recovery_key"] == RECOVERY.format("before")
    eventually(lambda: "key.restored" in audit_actions(settings, "inventory", enterprise[0]))


def test_a_rewrap_the_old_key_refuses_waits_and_resumes_when_it_is_usable(channels, gateway, kms):
    """Switching from one customer key to another while the old one is revoked: the data
    keys stay under the old key (and its fields fail closed) until it is usable again;
    then the re-wrap finishes by itself."""
    slug = unique("kw")
    create_tenant(channels, slug, tier=ipb.TIER_ENTERPRISE)
    tenant = (slug, make_token(channels, slug)[1])
    first, second = kms.create_key(), kms.create_key()

    def encryption():
        return gateway.call("GET", "/admin/api/v1/encryption", *tenant).json()

    assert (
        gateway.call("PUT", "/admin/api/v1/encryption", *tenant, {"key_arn": first}).status == 200
    )
    asset = new_asset(gateway, tenant, RECOVERY.format("w")).json()
    eventually(lambda: encryption()["state"] == "ready", timeout=30)
    kms.revoke(first)
    try:
        r = gateway.call("PUT", "/admin/api/v1/encryption", *tenant, {"key_arn": second})
        assert r.status == 200, r
        time.sleep(3)  # several re-wrap steps of identity's worker
        stuck = encryption()
        assert stuck["state"] == "rewrapping" and stuck["rewrapped"] < stuck["total"]
        assert stuck["key"] == second
    finally:
        kms.grant(first)
    eventually(
        lambda: (e := encryption())["state"] == "ready" and e["rewrapped"] == e["total"], timeout=30
    )
    kms.disable(first)  # the data keys no longer need it
    try:
        got = eventually_passes(lambda: _readable(gateway, tenant, asset["id"]), timeout=30)
        assert got == RECOVERY.format("w")
    finally:
        kms.enable(first)


def _readable(gateway, tenant, asset_id: str) -> str:
    r = read_key(gateway, tenant, asset_id)
    assert r.status == 200, r
    return r.json()["recovery_key"]


def test_rotation_reencrypts_old_values_and_keeps_them_readable(
    system, settings, gateway, enterprise, customer_key
):
    slug, _ = enterprise
    olds = [new_asset(gateway, enterprise, RECOVERY.format(i)).json() for i in range(5)]
    assert {stored(settings, slug, a["id"])[1:5] for a in olds} == {b"\x00\x00\x00\x01"}
    out = ontrack(system, "tenant", "key", "rotate", slug, "--wait", "--timeout", "90")
    assert out.returncode == 0, out.stderr + out.stdout
    status = json.loads(out.stdout)
    inventory = next(r for r in status["reencryption"] if r["service"] == "inventory")
    assert not inventory.get("reencrypting")
    assert {stored(settings, slug, a["id"])[1:5] for a in olds} == {b"\x00\x00\x00\x02"}
    for i, a in enumerate(olds):
        assert read_key(gateway, enterprise, a["id"]).json()["recovery_key"] == RECOVERY.format(i)
    shown = json.loads(ontrack(system, "tenant", "key", "show", slug).stdout)
    versions = {s["service"]: s["current_version"] for s in shown["services"]}
    assert versions["inventory"] == 2


def test_deleting_a_tenant_destroys_its_wrapped_keys(system, settings, channels, gateway):
    slug = unique("kd")
    create_tenant(channels, slug)
    token = make_token(channels, slug)[1]
    assert new_asset(gateway, (slug, token), RECOVERY.format("gone")).status == 201
    control = Names(settings.deployment, "identity").control_database
    with psycopg.connect(settings.pg_dsn("main"), dbname=control, autocommit=True) as conn:
        tenant_id = conn.execute(
            "SELECT id FROM tenants WHERE slug = %s AND status <> 'deleted'", (slug,)
        ).fetchone()[0]

        def keys() -> int:
            return conn.execute(
                "SELECT count(*) FROM tenant_data_keys WHERE tenant_id = %s", (tenant_id,)
            ).fetchone()[0]

        assert keys() >= 1
        assert ontrack(system, "tenant", "delete", slug).returncode == 0
        eventually(lambda: keys() == 0, timeout=60)
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit.entries WHERE target = %s", (f"tenant:{tenant_id}",)
            )
        ]
    assert "tenant.keys_destroy" in actions


def test_a_recovery_key_set_through_a_capitalised_id_reads_back_and_is_not_cached(
    settings, gateway, business
):
    asset = new_asset(gateway, business).json()
    shouted = asset["id"].upper()
    r = gateway.call(
        "PUT",
        f"/admin/api/v1/assets/{shouted}/recovery-key",
        *business,
        {"recovery_key": RECOVERY.format("caps")},
    )
    assert r.status == 200, r
    got = read_key(gateway, business, asset["id"])
    assert got.status == 200, got
    assert got.json()["recovery_key"] == RECOVERY.format("caps")
    assert got.headers["cache-control"] == "no-store"
    actions = audit_actions(settings, "inventory", business[0])
    assert "asset.recovery_key_set" in actions and "asset.recovery_key_read" in actions


def test_neither_the_platform_key_nor_another_tenants_key_can_be_brought(
    gateway, enterprise, channels, kms
):
    slug, token = enterprise
    platform = gateway.call(
        "PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": kms.platform_key}
    )
    assert platform.status == 409, platform
    assert "platform's key" in platform.json()["detail"]
    other = unique("kt")
    create_tenant(channels, other, tier=ipb.TIER_ENTERPRISE)
    other_token = make_token(channels, other)[1]
    shared = kms.create_key()
    mine = gateway.call("PUT", "/admin/api/v1/encryption", other, other_token, {"key_arn": shared})
    assert mine.status == 200, mine
    theirs = gateway.call("PUT", "/admin/api/v1/encryption", slug, token, {"key_arn": shared})
    assert theirs.status == 409, theirs
    assert "already protects another tenant" in theirs.json()["detail"]
    shown = gateway.call("GET", "/admin/api/v1/encryption", slug, token).json()
    assert kms.platform_key not in json.dumps(shown)  # the platform's ARN is not shown
