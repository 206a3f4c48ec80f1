"""Envelope encryption: the field API's rate against raw AES-GCM, and what the first use of
a tenant's key costs.

In process, no stack: a real ``TenantKeys`` over the real AWS provider (``AwsKms``, the
provider production uses, through boto3 with its production client settings) against a
``KmsEmulator`` (moto's KMS server behind the emulator's proxy) that this module starts
and stops. The key source is identity's ``KeyStore`` in memory (``Store``): a tenant's
first look-up generates data key version 1 at the KMS (GenerateDataKey under a key
created in the emulator), keeps only the wrapped key and answers that ring from then on.

- **field encrypt + decrypt rate**: ``FieldCipher.encrypt_text`` then ``decrypt_text`` of
  each value of a fixed list (BitLocker-style recovery keys, 55 characters, and 1 KiB
  texts), each bound to its own row id, for one tenant whose keys are cached (warm),
  against raw ``AESGCM(key).encrypt(nonce, value, aad)`` + ``decrypt`` of the same values
  under the same data key, a fresh random 12-byte nonce each and the same associated data
  (computed beforehand: the baseline pays for the cipher only). Measured paired: one pass
  over the list with each kind in turn (a burst of a few milliseconds), the leading kind
  rotating, for `seconds` in all, so all meet the same machine at the same moments; the
  figure is the median pass of each. A third kind, raw AES-GCM with one ``AESGCM`` object made once
  for the key, is measured in the same rotation and reported for information.
- **first use of a tenant's key**: a ``TenantKeys`` that has nothing cached for the tenant
  (tenants it has never seen, on a provider whose boto3 client is already made, as in a
  running process) decrypting one field the tenant's writer sealed: one ring look-up (in
  memory here; over gRPC to identity in a service) and one KMS Decrypt through boto3 to the
  emulator, then the field. Baseline: one bare boto3 ``kms.decrypt`` of the same wrapped
  key with the same encryption context through a client with the same settings, paired
  with each tenant's first use (the order alternating). Median and p95 over the tenants.

``python -m bench.keys [--seconds S] [--tenants N]`` runs just these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

import boto3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import figure, log, median, percentile
from ontrackio.core.config import Settings
from ontrackio.core.directory import TenantInfo
from ontrackio.core.keys import fields
from ontrackio.core.keys.aws import CLIENT_CONFIG, AwsKms
from ontrackio.core.keys.envelope import FieldCipher
from ontrackio.core.keys.kms import KeyProvider, context_of
from ontrackio.core.keys.ring import KeyRing, TenantKeys, WrappedKey
from ontrackio.devtools.kmsemulator import KmsEmulator

SERVICE = "inventory"
DEPLOYMENT = "benchkeys"
TABLE, COLUMN = "assets", "recovery_key"
RECOVERY_KEYS, KIB_VALUES = 1_000, 100
GOAL = 0.8  # field round trips/s, ours / raw AES-GCM
FIRST_USE_GOAL = 1.5  # first use, ours / one bare Decrypt (median)
# The key cache's times: the defaults (ONTRACK_DATA_KEY_CACHE_SECONDS, _RETRY_SECONDS).
TTL = Settings.model_fields["data_key_cache_seconds"].default
RETRY = Settings.model_fields["data_key_retry_seconds"].default
WARM_UP_CALLS = 5


def recovery_key(rng: random.Random) -> str:
    """A BitLocker recovery key's shape: eight groups of six digits (55 characters)."""
    return "-".join(f"{rng.randrange(10**6):06d}" for _ in range(8))


def values(seed: int = 1) -> list[tuple[str, str]]:
    """(row id, value): RECOVERY_KEYS recovery keys, then KIB_VALUES texts of 1,024
    characters (letters, digits, spaces and punctuation), each with a UUID row id."""
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " .,;:-_/"
    texts = [recovery_key(rng) for _ in range(RECOVERY_KEYS)]
    texts += ["".join(rng.choices(alphabet, k=1024)) for _ in range(KIB_VALUES)]
    return [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), t) for t in texts]


def tenant(i: int) -> TenantInfo:
    return TenantInfo(f"keys{i:04d}", "active", "main", "business")


def tenant_id(info: TenantInfo) -> str:
    """A stable UUID per slug, as the control database's tenant ids are UUIDs."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{info.slug}.{DEPLOYMENT}"))


class Store:
    """identity's KeyStore (identity/keystore.py) in memory: a tenant's first look-up
    generates data key version 1 under `kek` at the KMS, with the encryption context of its
    tenant id, service and version; the plaintext is dropped at once, only the wrapped key
    is kept and answered from then on. Counts the look-ups."""

    def __init__(self, kms: KeyProvider, kek: str):
        self.kms, self.kek = kms, kek
        self.rings: dict[str, KeyRing] = {}
        self.lookups = 0

    def __call__(self, info: TenantInfo) -> KeyRing:
        self.lookups += 1
        ring = self.rings.get(info.slug)
        if ring is None:
            tid = tenant_id(info)
            key = self.kms.generate_data_key(self.kek, context_of(DEPLOYMENT, tid, SERVICE, 1))
            ring = self.rings[info.slug] = KeyRing(tid, 1, (WrappedKey(1, self.kek, key.wrapped),))
        return ring


def tenant_keys(kms: KeyProvider, source: Callable[[TenantInfo], KeyRing]) -> TenantKeys:
    """A TenantKeys as core/runtime.py builds one, with the default cache times."""
    return TenantKeys(SERVICE, DEPLOYMENT, kms, source, ttl=TTL, retry=RETRY)


@contextmanager
def emulated_kms() -> Iterator[tuple[KmsEmulator, AwsKms]]:
    """A KMS emulator and an AwsKms on it; the emulator's dummy credentials are in the
    environment meanwhile, where boto3's usual chain (the provider's own) finds them."""
    with KmsEmulator() as emulator:
        credentials = {k: v for k, v in emulator.env().items() if k.startswith("AWS_")}
        with mock.patch.dict(os.environ, credentials):
            yield (
                emulator,
                AwsKms(
                    platform_key=emulator.platform_key,
                    endpoint_url=emulator.endpoint_url,
                    allowed_regions=(emulator.region,),
                ),
            )


# -- field encrypt + decrypt rate ------------------------------------------------------------

Rows = list[tuple[str, str]]  # (row id, value)


def _passes(
    info: TenantInfo, cipher: FieldCipher, key: bytes, tid: str, classes: dict[str, Rows]
) -> dict[str, Callable[[str], None]]:
    """Per kind, a pass over one class of values: each encrypted and decrypted once. The
    baseline's UTF-8 values and associated data are made here, before any clock runs."""
    raw = {
        c: [(v.encode(), fields.aad(tid, TABLE, COLUMN, rid)) for rid, v in rows]
        for c, rows in classes.items()
    }
    urandom, nonce_bytes = os.urandom, fields.NONCE_BYTES
    once = AESGCM(key)

    def ours(c: str) -> None:
        encrypt, decrypt = cipher.encrypt_text, cipher.decrypt_text
        for rid, value in classes[c]:
            decrypt(info, TABLE, COLUMN, rid, encrypt(info, TABLE, COLUMN, rid, value))

    def aesgcm(c: str) -> None:
        for value, aad in raw[c]:
            nonce = urandom(nonce_bytes)
            AESGCM(key).decrypt(nonce, AESGCM(key).encrypt(nonce, value, aad), aad)

    def aesgcm_reused(c: str) -> None:
        for value, aad in raw[c]:
            nonce = urandom(nonce_bytes)
            once.decrypt(nonce, once.encrypt(nonce, value, aad), aad)

    prefix, header = fields.PREFIX_BYTES, fields.HEADER_BYTES
    for c, rows in classes.items():  # every value comes back, under the same key (not timed)
        for (rid, value), (plain, aad) in zip(rows, raw[c], strict=True):
            blob = cipher.encrypt_text(info, TABLE, COLUMN, rid, value)
            assert cipher.decrypt_text(info, TABLE, COLUMN, rid, blob) == value
            opened = once.decrypt(blob[prefix:header], blob[header:], blob[:prefix] + aad)
            assert opened == plain, "FieldCipher seals with the baseline's data key and AAD"
    return {"ours": ours, "aesgcm": aesgcm, "aesgcm_reused": aesgcm_reused}


def field_rate(kms: AwsKms, emulator: KmsEmulator, seconds: float) -> dict:
    """Round trips/s per kind: of the whole list (the median pass) and of each class of
    value (the median time of its part of a pass); the passes made."""
    store = Store(kms, emulator.create_key())
    keys = tenant_keys(kms, store)
    cipher, info = FieldCipher(keys), tenant(0)
    tid, version, key = keys.current(info)  # warm: the ring fetched and unwrapped once
    assert store.lookups == 1 and version == 1
    rows = values()
    classes = {"recovery_keys": rows[:RECOVERY_KEYS], "kib": rows[RECOVERY_KEYS:]}
    passes = _passes(info, cipher, key, tid, classes)
    kinds = list(passes)
    times: dict[str, dict[str, list[float]]] = {
        kind: {c: [] for c in [*classes, "pass"]} for kind in kinds
    }
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        for kind in kinds[n % len(kinds) :] + kinds[: n % len(kinds)]:  # each leads in turn
            spent = 0.0
            for c in classes:
                t0 = time.perf_counter()
                passes[kind](c)
                took = time.perf_counter() - t0
                times[kind][c].append(took)
                spent += took
            times[kind]["pass"].append(spent)
        n += 1
    assert store.lookups == 1, "the tenant's keys were fetched again while warm"
    count = {c: len(part) for c, part in classes.items()} | {"pass": len(rows)}
    rate = {k: {c: count[c] / median(t) for c, t in times[k].items()} for k in kinds}
    log(
        "keys field rate: "
        + ", ".join(f"{k} {rate[k]['pass']:,.0f}/s" for k in kinds)
        + f", {n} passes each"
    )
    return {"rate": rate, "passes": n, "per_pass": len(rows)}


# -- first use of a tenant's key --------------------------------------------------------------


def first_use(kms: AwsKms, emulator: KmsEmulator, tenants: int) -> dict:
    """Per tenant, seconds of (a) a cold TenantKeys' first decrypt of one of its fields and
    (b) one bare boto3 Decrypt of its wrapped data key, paired, the order alternating."""
    kek = emulator.create_key()
    store = Store(kms, kek)
    writer = FieldCipher(tenant_keys(kms, store))
    reader = FieldCipher(tenant_keys(kms, store))  # every tenant is new to it
    bare = boto3.session.Session().client(
        "kms", region_name=emulator.region, endpoint_url=emulator.endpoint_url, config=CLIENT_CONFIG
    )
    rid, value = values()[0]
    infos = [tenant(1 + i) for i in range(tenants + 1)]  # the first warms the reader's client
    sealed = {i.slug: writer.encrypt_text(i, TABLE, COLUMN, rid, value) for i in infos}

    def decrypt_bare(info: TenantInfo) -> None:
        ring = store.rings[info.slug]
        wrapped = ring.keys[0]
        context = context_of(DEPLOYMENT, ring.tenant_id, SERVICE, wrapped.version)
        bare.decrypt(CiphertextBlob=wrapped.wrapped, KeyId=kek, EncryptionContext=context)

    def decrypt_cold(info: TenantInfo) -> None:
        assert reader.decrypt_text(info, TABLE, COLUMN, rid, sealed[info.slug]) == value

    for _ in range(WARM_UP_CALLS):  # the bare client's first calls load its endpoint rules
        decrypt_bare(infos[0])
    decrypt_cold(infos[0])
    lookups = store.lookups
    ours: list[float] = []
    base: list[float] = []
    for n, info in enumerate(infos[1:]):
        pair = ((decrypt_bare, base), (decrypt_cold, ours))
        for call, into in pair if n % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            call(info)
            into.append(time.perf_counter() - t0)
    assert store.lookups == lookups + tenants, "one ring look-up per tenant's first use"
    log(
        f"keys first use: median {median(ours) * 1e3:.2f} ms (bare Decrypt "
        f"{median(base) * 1e3:.2f} ms), p95 {percentile(ours, 95) * 1e3:.2f} ms "
        f"({percentile(base, 95) * 1e3:.2f} ms), {tenants} tenants"
    )
    return {"ours_s": ours, "bare_s": base, "tenants": tenants}


# -- figures ----------------------------------------------------------------------------------


def run(seconds: float = 6.0, tenants: int = 50) -> tuple[list[dict], dict]:
    """The envelope-encryption figures, and the raw numbers behind them."""
    with emulated_kms() as (emulator, kms):
        rate = field_rate(kms, emulator, seconds)
        cold = first_use(kms, emulator, tenants)
    r = rate["rate"]
    ours, aesgcm, reused = (r[k]["pass"] for k in ("ours", "aesgcm", "aesgcm_reused"))
    us, ms = 1e6, 1e3
    per_class = "; ".join(
        f"{label}: ours {us / r['ours'][c]:.2f} µs, baseline {us / r['aesgcm'][c]:.2f} µs "
        f"({r['ours'][c] / r['aesgcm'][c]:.2f}x)"
        for c, label in (("recovery_keys", "recovery keys"), ("kib", "1 KiB texts"))
    )
    paired = (
        f"measured paired in one process: a pass over the {rate['per_pass']:,} values with each "
        f"kind in turn, the leading kind rotating, for {seconds:.0f} s ({rate['passes']} passes "
        f"each); the median pass of each. Per round trip, median: {per_class}"
    )
    o_med, b_med = median(cold["ours_s"]) * ms, median(cold["bare_s"]) * ms
    o_p95, b_p95 = percentile(cold["ours_s"], 95) * ms, percentile(cold["bare_s"], 95) * ms
    cold_note = (
        f"{cold['tenants']} tenants, each new to one TenantKeys over AwsKms whose boto3 client "
        "is made (as in a running process): the ring look-up (in memory here; a gRPC call to "
        "identity in a service, not included) + one KMS Decrypt through boto3 to the KMS "
        "emulator (moto behind the emulator's proxy, on loopback) + the field's AES-GCM "
        "decrypt. Baseline: one bare boto3 kms.decrypt of the same wrapped key with the same "
        "encryption context, from a client with the production settings (core/keys/aws.py "
        "CLIENT_CONFIG), paired with each first use, the order alternating"
    )
    figs = [
        figure(
            "keys: field encrypt + decrypt, FieldCipher vs raw AESGCM",
            ours,
            aesgcm,
            "round trips/s",
            f"ratio >= {GOAL}",
            ours >= GOAL * aesgcm,
            f"FieldCipher.encrypt_text + decrypt_text (the tenant's cached key, associated "
            f"data of tenant id, table, column and row id, format and version header, checks) "
            f"of {RECOVERY_KEYS:,} BitLocker-style recovery keys (55 characters) and "
            f"{KIB_VALUES} 1 KiB texts, each with its own row id, one tenant whose keys are "
            f"cached, through TenantKeys over AwsKms and the KMS emulator. Baseline: "
            f"AESGCM(key).encrypt(nonce, value, aad) + AESGCM(key).decrypt of the same values "
            f"(UTF-8) under the same data key with the same associated data (both made "
            f"beforehand), a fresh os.urandom(12) nonce each; {paired}",
        ),
        figure(
            "keys: field encrypt + decrypt vs AESGCM object reused",
            ours,
            reused,
            "round trips/s",
            "",
            None,
            "the same passes against raw AES-GCM with one AESGCM object made once for the key "
            f"({us / reused:.2f} µs per round trip, measured in the same rotation): the cipher "
            "alone, what no caller that checks and binds its values can reach; informational",
        ),
        figure(
            "keys: first use of a tenant's key, median",
            o_med,
            b_med,
            "ms",
            f"ratio <= {FIRST_USE_GOAL}",
            o_med <= FIRST_USE_GOAL * b_med,
            f"{cold_note}. The goal holds the first use to one KMS round trip and little "
            "else: a second round trip (another Decrypt, a DescribeKey) would double it",
        ),
        figure(
            "keys: first use of a tenant's key, p95",
            o_p95,
            b_p95,
            "ms",
            "info",
            None,
            f"the 95th percentile of the same {cold['tenants']} pairs (informational: on a "
            "shared machine a few samples decide it)",
        ),
    ]
    raw = {
        "round_trips_per_s": r,
        "passes": rate["passes"],
        "first_use_ms": [round(t * ms, 3) for t in cold["ours_s"]],
        "bare_decrypt_ms": [round(t * ms, 3) for t in cold["bare_s"]],
    }
    return figs, raw


def main() -> None:
    from bench.run import table

    parser = argparse.ArgumentParser(prog="bench.keys", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="paired field passes, in all")
    parser.add_argument("--tenants", type=int, default=50, help="first uses measured")
    args = parser.parse_args()
    figs, raw = run(args.seconds, args.tenants)
    print(table(figs))
    print(json.dumps(raw))


if __name__ == "__main__":
    main()
