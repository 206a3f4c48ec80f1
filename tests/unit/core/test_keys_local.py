"""The development key provider (core/keys/local.py): data keys wrap and unwrap under a KEK
file; a rotation keeps older versions readable; a wrong context, another KEK, a tampered
blob or a missing version file are refused with the precise cause; a disabled KEK fails
closed; files are private; processes sharing the directory agree, also on a first start
at once; outside development mode it refuses to exist."""

from __future__ import annotations

import logging
import os
import stat
import threading

import pytest

from ontrackio.core import config
from ontrackio.core.errors import KeyUnavailable
from ontrackio.core.keys import fields
from ontrackio.core.keys.kms import DATA_KEY_BYTES, InvalidKey, context_of
from ontrackio.core.keys.local import LocalKms

PLATFORM = "local:platform"
OTHER = "local:customer-a"
CONTEXT = context_of("devx", "7f0c3f4e-0000-4000-8000-000000000001", "inventory", 1)


@pytest.fixture
def kms(tmp_path):
    return LocalKms(tmp_path / "kms")


def cause_of(call, *args) -> str:
    with pytest.raises(KeyUnavailable) as info:
        call(*args)
    return info.value.cause


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- wrap, unwrap, rotate, rewrap ------------------------------------------------------------


def test_a_data_key_unwraps_under_its_kek_and_context(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    assert len(key.plaintext) == DATA_KEY_BYTES
    assert kms.unwrap(PLATFORM, key.wrapped, CONTEXT) == key.plaintext
    assert key.wrapped[:5] == b"\x01\x00\x00\x00\x01"  # format, KEK version 1
    assert kms.generate_data_key(PLATFORM, CONTEXT).plaintext != key.plaintext


def test_the_provider_names_itself_and_its_platform_key(kms):
    assert kms.name == "local"
    assert kms.platform_key() == PLATFORM
    assert kms.region_of(PLATFORM) is None


def test_rotation_keeps_old_wraps_readable_and_new_wraps_use_the_new_version(kms):
    old = kms.generate_data_key(PLATFORM, CONTEXT)
    assert kms.rotate(PLATFORM) == 2
    new = kms.generate_data_key(PLATFORM, CONTEXT)
    assert (fields.version_of(old.wrapped), fields.version_of(new.wrapped)) == (1, 2)
    assert kms.unwrap(PLATFORM, old.wrapped, CONTEXT) == old.plaintext
    assert kms.unwrap(PLATFORM, new.wrapped, CONTEXT) == new.plaintext
    assert sorted(p.name for p in kms.directory.glob("*.key")) == [
        "platform.v1.key",
        "platform.v2.key",
    ]


def test_rotating_a_new_kek_creates_its_first_version(kms):
    assert kms.rotate(OTHER) == 1
    assert kms.rotate(OTHER) == 2


def test_rewrap_moves_a_data_key_to_the_newest_version_of_the_destination(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    kms.rotate(PLATFORM)
    same = kms.rewrap(PLATFORM, PLATFORM, key.wrapped, CONTEXT)
    assert fields.version_of(same) == 2
    assert kms.unwrap(PLATFORM, same, CONTEXT) == key.plaintext

    moved = kms.rewrap(PLATFORM, OTHER, key.wrapped, CONTEXT)
    assert kms.unwrap(OTHER, moved, CONTEXT) == key.plaintext
    assert cause_of(kms.unwrap, PLATFORM, moved, CONTEXT) == "invalid"


def test_rewrap_refuses_a_blob_its_source_does_not_unwrap(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    other_context = {**CONTEXT, "ontrack:tenant": "someone-else"}
    assert cause_of(kms.rewrap, PLATFORM, OTHER, key.wrapped, other_context) == "invalid"


def test_check_round_trips_a_fresh_kek(kms):
    kms.check(OTHER)
    assert (kms.directory / "customer-a.v1.key").exists()


# -- refusals and their causes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "context",
    [
        {**CONTEXT, "ontrack:tenant": "7f0c3f4e-0000-4000-8000-000000000002"},
        {**CONTEXT, "ontrack:version": "2"},
        {k: v for k, v in CONTEXT.items() if k != "ontrack:service"},
        {**CONTEXT, "extra": ""},
        {},
    ],
    ids=["tenant", "version", "missing", "extra", "empty"],
)
def test_another_context_does_not_unwrap(kms, context):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    assert cause_of(kms.unwrap, PLATFORM, key.wrapped, context) == "invalid"


def test_contexts_that_concatenate_alike_are_different_contexts(kms):
    key = kms.generate_data_key(PLATFORM, {"a": "bc"})
    assert cause_of(kms.unwrap, PLATFORM, key.wrapped, {"ab": "c"}) == "invalid"
    assert kms.unwrap(PLATFORM, key.wrapped, {"a": "bc"}) == key.plaintext


def test_the_context_order_does_not_matter(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    assert kms.unwrap(PLATFORM, key.wrapped, dict(reversed(CONTEXT.items()))) == key.plaintext


def test_a_blob_of_another_kek_is_refused_rather_than_unwrapped(kms):
    kms.check(OTHER)  # both KEKs have a version 1
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    assert cause_of(kms.unwrap, OTHER, key.wrapped, CONTEXT) == "invalid"


def test_the_kek_name_is_bound_even_where_two_keks_hold_the_same_bytes(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    shared = (kms.directory / "platform.v1.key").read_bytes()
    (kms.directory / "customer-a.v1.key").write_bytes(shared)
    assert cause_of(kms.unwrap, OTHER, key.wrapped, CONTEXT) == "invalid"


@pytest.mark.parametrize("index", [0, 5, 16, 17, 40, -1])
def test_a_tampered_blob_is_invalid(kms, index):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    blob = bytearray(key.wrapped)
    blob[index] ^= 0x20
    assert cause_of(kms.unwrap, PLATFORM, bytes(blob), CONTEXT) == "invalid"


@pytest.mark.parametrize("blob", [b"", b"\x01", b"\x01\x00\x00\x00\x01" + bytes(59), "text"])
def test_a_blob_that_is_no_wrapped_key_is_invalid(kms, blob):
    kms.check(PLATFORM)
    assert cause_of(kms.unwrap, PLATFORM, blob, CONTEXT) == "invalid"


def test_a_blob_relabelled_to_another_existing_version_is_invalid(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    kms.rotate(PLATFORM)
    relabelled = key.wrapped[:4] + b"\x02" + key.wrapped[5:]
    assert cause_of(kms.unwrap, PLATFORM, relabelled, CONTEXT) == "invalid"


def test_a_version_whose_file_is_missing_is_not_found(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    relabelled = key.wrapped[:4] + b"\x07" + key.wrapped[5:]
    assert cause_of(kms.unwrap, PLATFORM, relabelled, CONTEXT) == "not_found"
    kms.rotate(PLATFORM)
    (kms.directory / "platform.v1.key").unlink()
    assert cause_of(kms.unwrap, PLATFORM, key.wrapped, CONTEXT) == "not_found"
    assert cause_of(kms.unwrap, OTHER, key.wrapped, CONTEXT) == "not_found"  # never created


def test_a_damaged_kek_file_is_invalid(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    (kms.directory / "platform.v1.key").write_bytes(b"short")
    assert cause_of(kms.unwrap, PLATFORM, key.wrapped, CONTEXT) == "invalid"
    assert cause_of(kms.check, PLATFORM) == "invalid"


@pytest.mark.parametrize(
    "kek",
    [
        "platform",
        "local:",
        "local:Platform",
        "local:a_b",
        "local:a.v1",
        "local:../x",
        "local:" + "a" * 41,
        "local:platform\n",
        "arn:aws:kms:eu-central-1:111122223333:key/x",
        None,
    ],
)
def test_a_malformed_reference_is_an_invalid_key(kms, kek):
    calls = [
        lambda: kms.generate_data_key(kek, CONTEXT),
        lambda: kms.unwrap(kek, b"", CONTEXT),
        lambda: kms.rewrap(kek, PLATFORM, b"", CONTEXT),
        lambda: kms.rewrap(PLATFORM, kek, b"", CONTEXT),
        lambda: kms.check(kek),
        lambda: kms.region_of(kek),
        lambda: kms.rotate(kek),
        lambda: kms.disable(kek),
        lambda: kms.enable(kek),
    ]
    for call in calls:
        with pytest.raises(InvalidKey, match="local:<name>"):
            call()
    assert not kms.directory.exists()


def test_a_name_of_forty_characters_is_allowed(kms):
    kms.check("local:" + "a-9" * 13 + "z")


# -- disable and enable ----------------------------------------------------------------------


def test_a_disabled_kek_fails_closed_until_enabled(kms):
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    kms.check(OTHER)
    kms.disable(PLATFORM)
    refused = [
        lambda: kms.generate_data_key(PLATFORM, CONTEXT),
        lambda: kms.unwrap(PLATFORM, key.wrapped, CONTEXT),
        lambda: kms.rewrap(PLATFORM, OTHER, key.wrapped, CONTEXT),
        lambda: kms.rewrap(OTHER, PLATFORM, key.wrapped, CONTEXT),
        lambda: kms.check(PLATFORM),
        lambda: kms.rotate(PLATFORM),
    ]
    for call in refused:
        assert cause_of(call) == "disabled"
    kms.check(OTHER)  # another KEK is not affected

    kms.disable(PLATFORM)  # twice is once
    kms.enable(PLATFORM)
    assert kms.unwrap(PLATFORM, key.wrapped, CONTEXT) == key.plaintext
    kms.enable(PLATFORM)  # enabling an enabled KEK does nothing
    kms.check(PLATFORM)


def test_a_kek_disabled_by_another_process_is_refused_at_once(tmp_path):
    one, other = LocalKms(tmp_path), LocalKms(tmp_path)
    key = one.generate_data_key(PLATFORM, CONTEXT)
    other.disable(PLATFORM)
    assert cause_of(one.unwrap, PLATFORM, key.wrapped, CONTEXT) == "disabled"
    other.enable(PLATFORM)
    assert one.unwrap(PLATFORM, key.wrapped, CONTEXT) == key.plaintext


def test_the_unavailable_message_names_the_cause(kms):
    kms.disable(PLATFORM)
    with pytest.raises(KeyUnavailable, match=r"^tenant key unavailable \(disabled\)$"):
        kms.check(PLATFORM)


# -- files -----------------------------------------------------------------------------------


@pytest.fixture
def no_umask():
    """Modes must not depend on the process's umask: clear it for the test."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_the_directory_and_every_file_are_private(kms, no_umask):
    kms.generate_data_key(PLATFORM, CONTEXT)
    kms.rotate(PLATFORM)
    kms.disable(OTHER)
    assert mode_of(kms.directory) == 0o700
    files = sorted(kms.directory.iterdir())
    assert [p.name for p in files] == ["customer-a.disabled", "platform.v1.key", "platform.v2.key"]
    assert all(mode_of(p) == 0o600 for p in files)
    assert all(len(p.read_bytes()) == 32 for p in files if p.suffix == ".key")


def test_an_existing_directory_open_to_others_is_made_private(tmp_path, no_umask):
    directory = tmp_path / "kms"
    directory.mkdir(mode=0o755)
    LocalKms(directory).check(PLATFORM)
    assert mode_of(directory) == 0o700


def test_the_key_bytes_are_never_logged(kms, caplog):
    caplog.set_level(logging.DEBUG)
    key = kms.generate_data_key(PLATFORM, CONTEXT)
    kms.rotate(PLATFORM)
    kms.rewrap(PLATFORM, PLATFORM, key.wrapped, CONTEXT)
    assert "created local:platform version 2" in caplog.text
    secrets = [p.read_bytes() for p in kms.directory.glob("*.key")] + [key.plaintext]
    for secret in secrets:
        assert secret.hex() not in caplog.text and repr(secret) not in caplog.text


def test_two_providers_on_one_directory_agree(tmp_path):
    """As two processes would: each sees the other's KEK, rotations and wraps."""
    one, other = LocalKms(tmp_path), LocalKms(tmp_path)
    key = one.generate_data_key(PLATFORM, CONTEXT)
    assert other.unwrap(PLATFORM, key.wrapped, CONTEXT) == key.plaintext
    assert other.rotate(PLATFORM) == 2
    newer = one.generate_data_key(PLATFORM, CONTEXT)
    assert fields.version_of(newer.wrapped) == 2
    assert other.unwrap(PLATFORM, newer.wrapped, CONTEXT) == newer.plaintext


def test_a_first_start_at_once_makes_one_kek_that_every_starter_uses(tmp_path):
    """Many providers wrap their first data key at the same moment, each from a directory
    with no KEK yet: one version 1 is made, and every wrap unwraps under it."""
    starters = 16
    barrier = threading.Barrier(starters)
    results: list = [None] * starters

    def start(i: int) -> None:
        provider = LocalKms(tmp_path / "kms")
        barrier.wait()
        results[i] = provider.generate_data_key(PLATFORM, CONTEXT)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [p.name for p in (tmp_path / "kms").iterdir()] == ["platform.v1.key"]
    later = LocalKms(tmp_path / "kms")
    for key in results:
        assert later.unwrap(PLATFORM, key.wrapped, CONTEXT) == key.plaintext


def test_rotations_at_once_each_add_a_version(tmp_path):
    LocalKms(tmp_path).check(PLATFORM)
    rotators = 8
    barrier = threading.Barrier(rotators)
    versions: list[int] = []

    def rotate() -> None:
        provider = LocalKms(tmp_path)
        barrier.wait()
        versions.append(provider.rotate(PLATFORM))

    threads = [threading.Thread(target=rotate) for _ in range(rotators)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(2, 2 + rotators))


# -- settings ----------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("ONTRACK_"):
            monkeypatch.delenv(name)


def test_from_settings_refuses_outside_development_mode(clean_env):
    settings = config.load(
        development=False,
        tenant_role_secret="a-real-secret",
        token_hash_key="another-real-secret",
        amqp_url="amqp://ot:pw@127.0.0.1:5672/",
        tls_ca_file="ca.pem",
        tls_cert_file="{identity}.pem",
        tls_key_file="{identity}-key.pem",
    )
    with pytest.raises(config.ConfigError) as info:
        LocalKms.from_settings(settings)
    message = str(info.value)
    assert message.startswith("ONTRACK_KMS_PROVIDER: ") and "\n" not in message


def test_from_settings_uses_the_deployments_run_directory(clean_env):
    kms = LocalKms.from_settings(config.load(development=True, deployment="devx"))
    assert kms.directory == config.ROOT / ".run" / "devx" / "kms"
