"""TenantKeys and FieldCipher over the local key provider (a real KEK on disk): first use,
the cache time, fail closed and recovery without a new object, rotation, and fields bound
to their row and tenant."""

from __future__ import annotations

import pytest

from ontrackio.core.directory import TenantInfo
from ontrackio.core.errors import FieldUnreadable, KeyUnavailable
from ontrackio.core.keys.envelope import FieldCipher
from ontrackio.core.keys.kms import context_of
from ontrackio.core.keys.local import LocalKms
from ontrackio.core.keys.ring import KeyRing, TenantKeys, WrappedKey

ACME = TenantInfo("acme", "active", "main", "enterprise")
GLOBEX = TenantInfo("globex", "active", "main", "business")


class Store:
    """A key store as identity keeps it: wrapped data keys per tenant, generated on first
    use under the tenant's KEK; counts look-ups."""

    def __init__(self, kms: LocalKms, service: str = "inventory"):
        self.kms, self.service = kms, service
        self.rings: dict[str, list[WrappedKey]] = {}
        self.keks = {"acme": "local:acme", "globex": "local:globex"}
        self.lookups = 0

    def add_version(self, slug: str) -> int:
        version = len(self.rings.setdefault(slug, [])) + 1
        kek = self.keks[slug]
        key = self.kms.generate_data_key(kek, context_of("ot", f"id-{slug}", self.service, version))
        self.rings[slug].append(WrappedKey(version, kek, key.wrapped))
        return version

    def __call__(self, info: TenantInfo) -> KeyRing:
        self.lookups += 1
        if info.slug not in self.rings:
            self.add_version(info.slug)
        ring = self.rings[info.slug]
        return KeyRing(f"id-{info.slug}", ring[-1].version, tuple(ring))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kms(tmp_path):
    return LocalKms(tmp_path / "kms")


@pytest.fixture
def world(kms):
    store, clock, events = Store(kms), Clock(), []
    keys = TenantKeys(
        "inventory",
        "ot",
        kms,
        store,
        ttl=60,
        retry=2,
        clock=clock,
        on_unavailable=lambda info, cause: events.append(("unavailable", info.slug, cause)),
        on_restored=lambda info: events.append(("restored", info.slug)),
    )
    return keys, FieldCipher(keys), store, clock, events


def test_a_field_round_trips_and_keys_are_fetched_once_per_cache_time(world):
    keys, fields, store, clock, _ = world
    blob = fields.encrypt_text(ACME, "assets", "recovery_key", "row-1", "sekrit")
    assert b"sekrit" not in blob
    assert fields.decrypt_text(ACME, "assets", "recovery_key", "row-1", blob) == "sekrit"
    assert store.lookups == 1
    clock.now += 59
    fields.decrypt_text(ACME, "assets", "recovery_key", "row-1", blob)
    assert store.lookups == 1
    clock.now += 2
    fields.decrypt_text(ACME, "assets", "recovery_key", "row-1", blob)
    assert store.lookups == 2


@pytest.mark.parametrize(
    "where",
    [
        (ACME, "assets", "recovery_key", "row-2"),
        (ACME, "assets", "notes", "row-1"),
        (ACME, "owners", "recovery_key", "row-1"),
        (GLOBEX, "assets", "recovery_key", "row-1"),
    ],
)
def test_a_ciphertext_moved_anywhere_else_does_not_decrypt(world, where):
    _, fields, *_ = world
    blob = fields.encrypt_text(ACME, "assets", "recovery_key", "row-1", "sekrit")
    with pytest.raises(FieldUnreadable):
        fields.decrypt_text(*where, blob)


def test_a_disabled_kek_fails_that_tenant_closed_and_it_recovers_without_a_new_object(world, kms):
    keys, fields, store, clock, events = world
    acme = fields.encrypt_text(ACME, "assets", "recovery_key", "r", "a")
    globex = fields.encrypt_text(GLOBEX, "assets", "recovery_key", "r", "g")
    kms.disable("local:acme")
    # Within the cache time the unwrapped key still serves (documented trade-off) ...
    assert fields.decrypt_text(ACME, "assets", "recovery_key", "r", acme) == "a"
    clock.now += 61
    # ... after it, that tenant fails closed, reads and writes alike; the other does not.
    for _ in range(3):
        with pytest.raises(KeyUnavailable) as refused:
            fields.decrypt_text(ACME, "assets", "recovery_key", "r", acme)
        assert refused.value.cause == "disabled"
        assert refused.value.reason == "tenant-key-unavailable"
        assert str(refused.value) == "tenant key unavailable (disabled)"
    with pytest.raises(KeyUnavailable):
        fields.encrypt_text(ACME, "assets", "recovery_key", "r2", "new")
    assert fields.decrypt_text(GLOBEX, "assets", "recovery_key", "r", globex) == "g"
    assert events == [("unavailable", "acme", "disabled")]  # told once, not per refusal
    assert keys.unavailable() == 1
    lookups = store.lookups
    kms.enable("local:acme")
    # Still refused until the retry time passes, without asking the store or the KMS.
    with pytest.raises(KeyUnavailable):
        fields.decrypt_text(ACME, "assets", "recovery_key", "r", acme)
    assert store.lookups == lookups
    clock.now += 2.5
    assert fields.decrypt_text(ACME, "assets", "recovery_key", "r", acme) == "a"
    assert events[-1] == ("restored", "acme")
    assert keys.unavailable() == 0


def test_after_a_rotation_new_values_use_the_new_version_and_old_ones_stay_readable(world):
    keys, fields, store, clock, _ = world
    old = fields.encrypt_text(ACME, "assets", "recovery_key", "r", "old")
    assert store.add_version("acme") == 2
    # A value under a version the cached ring lacks makes it fetch the ring again.
    clock.now += 61
    new = fields.encrypt_text(ACME, "assets", "recovery_key", "r", "new")
    assert new[1:5] == (2).to_bytes(4, "big") and old[1:5] == (1).to_bytes(4, "big")
    assert fields.decrypt_text(ACME, "assets", "recovery_key", "r", old) == "old"
    assert fields.current_version(ACME) == 2
    keys.forget("acme")
    assert fields.decrypt_text(ACME, "assets", "recovery_key", "r", new) == "new"


def test_a_version_the_store_does_not_have_is_the_values_fault(world):
    _, fields, store, *_ = world
    blob = bytearray(fields.encrypt_text(ACME, "assets", "recovery_key", "r", "x"))
    blob[1:5] = (7).to_bytes(4, "big")
    with pytest.raises(FieldUnreadable) as refused:
        fields.decrypt_text(ACME, "assets", "recovery_key", "r", bytes(blob))
    assert refused.value.cause == "bad_version"
    assert store.lookups == 2  # one look-up for the newer version


def test_a_failed_refresh_keeps_the_keys_still_within_their_time(world, kms):
    keys, fields, store, clock, _ = world
    old = fields.encrypt_text(ACME, "assets", "recovery_key", "r", "old")
    store.add_version("acme")  # rotated elsewhere; this process has not seen it
    newer = bytearray(old)
    newer[1:5] = (2).to_bytes(4, "big")
    kms.disable("local:acme")
    with pytest.raises(KeyUnavailable):  # fetching the newer version fails ...
        fields.decrypt_text(ACME, "assets", "recovery_key", "r", bytes(newer))
    # ... and the cached version 1 still serves until its time is up
    assert fields.decrypt_text(ACME, "assets", "recovery_key", "r", old) == "old"


def test_keys_of_a_tenant_no_longer_used_are_swept_after_their_time(world):
    keys, fields, store, clock, _ = world
    fields.encrypt_text(ACME, "assets", "recovery_key", "r", "a")
    clock.now += 61
    fields.encrypt_text(GLOBEX, "assets", "recovery_key", "r", "g")  # any use sweeps
    assert set(keys._entries) == {"globex"}


def test_a_wrapped_key_of_another_tenant_does_not_unwrap(world, kms):
    keys, fields, store, *_ = world
    store(GLOBEX)
    store.rings["acme"] = list(store.rings["globex"])  # globex's wrapped key served for acme
    store.keks["acme"] = "local:globex"
    with pytest.raises(KeyUnavailable) as refused:
        fields.encrypt_text(ACME, "assets", "recovery_key", "r", "x")
    assert refused.value.cause == "invalid"


def test_the_field_key_is_the_data_key_made_ready_once_per_unwrap(world):
    keys, _, store, clock, _ = world
    tenant_id, key = keys.current_field_key(ACME)
    assert (tenant_id, key.version, key.key) == keys.current(ACME)
    assert keys.field_key(ACME, 1) == (tenant_id, key)
    assert keys.key(ACME, 1) == (tenant_id, key.key)
    assert keys.current_field_key(ACME)[1] is key  # cached with the ring, not made per use
    clock.now += 61
    assert keys.current_field_key(ACME)[1] is not key  # the ring fetched and unwrapped again
    assert store.lookups == 2


@pytest.mark.parametrize(
    "blob, cause",
    [
        (b"", "too_short"),
        (b"\x02" + bytes(40), "unknown_format"),
        (b"\x01\x00\x00\x00\x00" + bytes(40), "bad_version"),
    ],
)
def test_a_blob_that_is_no_sealed_value_is_unreadable_naming_why(world, blob, cause):
    _, fields, *_ = world
    for decrypt in (fields.decrypt, fields.decrypt_text):
        with pytest.raises(FieldUnreadable) as unreadable:
            decrypt(ACME, "assets", "recovery_key", "r", blob)
        assert unreadable.value.cause == cause


def test_bytes_round_trip_and_an_older_version_opens_with_its_own_key(world):
    keys, fields, store, clock, _ = world
    old = fields.encrypt(ACME, "assets", "photo", "r", b"\x00\xff")
    store.add_version("acme")
    clock.now += 61
    new = fields.encrypt(ACME, "assets", "photo", "r", b"\x01")
    assert fields.decrypt(ACME, "assets", "photo", "r", old) == b"\x00\xff"
    assert fields.decrypt(ACME, "assets", "photo", "r", new) == b"\x01"
    assert new[:5] == keys.current_field_key(ACME)[1].prefix != old[:5]
