"""The AWS key provider (core/keys/aws.py) against the KMS emulator (devtools/kmsemulator.py):
moto's real server, through the refusing proxy, through boto3. Key state is changed with
the real KMS API (DisableKey, ScheduleKeyDeletion, ...); only a revoked grant and a KMS
that is down are the emulator's own doing. Each fault is answered with its precise cause,
and once it is undone the same provider object works again: nothing to restart.
"""

from __future__ import annotations

import os
import time
from types import MappingProxyType
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from ontrackio.core import config
from ontrackio.core.keys.aws import AwsKms
from ontrackio.core.keys.kms import DATA_KEY_BYTES, InvalidKey, KeyUnavailable, context_of
from ontrackio.devtools.kmsemulator import KmsEmulator

CENTRAL, WEST = "eu-central-1", "eu-west-1"
CONTEXT = context_of("t0", "tenant-a", "inventory", 1)


@pytest.fixture(scope="module")
def kms():
    """One emulator for the module (moto keeps its keys in its process's memory), and the
    credentials boto3's usual chain finds: the provider under test makes its own clients."""
    with KmsEmulator() as emulator:
        credentials = {k: v for k, v in emulator.env().items() if k.startswith("AWS_")}
        with mock.patch.dict(os.environ, credentials):
            yield emulator


@pytest.fixture
def provider(kms):
    return AwsKms(
        platform_key=kms.platform_key,
        endpoint_url=kms.endpoint_url,
        allowed_regions=(CENTRAL, WEST),
    )


def _cause(call) -> str:
    with pytest.raises(KeyUnavailable) as refused:
        call()
    return refused.value.cause


def test_a_data_key_unwraps_under_its_key_and_context(kms, provider):
    kek = kms.create_key()
    key = provider.generate_data_key(kek, CONTEXT)
    assert len(key.plaintext) == DATA_KEY_BYTES
    assert key.plaintext not in key.wrapped
    assert provider.unwrap(kek, key.wrapped, CONTEXT) == key.plaintext
    assert provider.unwrap(kek, key.wrapped, MappingProxyType(CONTEXT)) == key.plaintext
    assert provider.generate_data_key(kek, CONTEXT).plaintext != key.plaintext


def test_a_wrapped_key_does_not_unwrap_with_another_context_or_under_another_key(kms, provider):
    kek, other = kms.create_key(), kms.create_key()
    key = provider.generate_data_key(kek, CONTEXT)
    for context in (
        context_of("t0", "tenant-b", "inventory", 1),
        context_of("t0", "tenant-a", "inventory", 2),
        {**CONTEXT, "extra": "x"},
        {},
    ):
        assert _cause(lambda c=context: provider.unwrap(kek, key.wrapped, c)) == "invalid"
    # a blob of another key is refused (IncorrectKeyException), not decrypted under its own
    assert _cause(lambda: provider.unwrap(other, key.wrapped, CONTEXT)) == "invalid"
    assert provider.unwrap(kek, key.wrapped, CONTEXT) == key.plaintext  # positive control


def test_rewrap_moves_a_data_key_to_another_key_which_alone_then_unwraps_it(kms, provider):
    old, new = kms.create_key(), kms.create_key()
    key = provider.generate_data_key(old, CONTEXT)
    moved = provider.rewrap(old, new, key.wrapped, CONTEXT)
    assert moved != key.wrapped and key.plaintext not in moved
    kms.schedule_deletion(old)
    assert provider.unwrap(new, moved, CONTEXT) == key.plaintext  # the old key is not needed
    assert _cause(lambda: provider.unwrap(old, moved, CONTEXT)) == "pending_deletion"
    # ReEncrypt checks the source key named against the ciphertext's (moto alone ignores it)
    third = kms.create_key()
    assert _cause(lambda: provider.rewrap(third, new, moved, CONTEXT)) == "invalid"
    # within one key: a new ciphertext of the same data key
    again = provider.rewrap(new, new, moved, CONTEXT)
    assert again != moved and provider.unwrap(new, again, CONTEXT) == key.plaintext


def test_rewrap_into_another_allowed_region_uses_each_regions_own_key(kms, provider):
    central, west = kms.create_key(CENTRAL), kms.create_key(WEST)
    key = provider.generate_data_key(central, CONTEXT)
    moved = provider.rewrap(central, west, key.wrapped, CONTEXT)
    assert provider.region_of(west) == WEST
    assert provider.unwrap(west, moved, CONTEXT) == key.plaintext
    kms.disable(central)
    assert provider.unwrap(west, moved, CONTEXT) == key.plaintext


def test_check_proves_a_key_usable_and_names_why_not(kms, provider):
    kek = kms.create_key()
    provider.check(kek)
    kms.disable(kek)
    assert _cause(lambda: provider.check(kek)) == "disabled"
    missing = kek.rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000"
    assert _cause(lambda: provider.check(missing)) == "not_found"


FAULTS = {
    # cause: (break it, undo it, the key state DescribeKey shows meanwhile)
    "disabled": (KmsEmulator.disable, KmsEmulator.enable, "Disabled"),
    "pending_deletion": (
        KmsEmulator.schedule_deletion,
        lambda kms, arn: (kms.cancel_deletion(arn), kms.enable(arn)),
        "PendingDeletion",
    ),
    "access_denied": (KmsEmulator.revoke, KmsEmulator.grant, "Enabled"),
    "unreachable": (lambda kms, arn: kms.go_down(), lambda kms, arn: kms.come_back(), None),
}


@pytest.mark.parametrize("cause", list(FAULTS))
def test_a_key_that_cannot_be_used_is_refused_with_its_cause_until_it_recovers(
    kms, provider, cause
):
    breaks, undoes, state = FAULTS[cause]
    kek = kms.create_key()
    key = provider.generate_data_key(kek, CONTEXT)
    if state is not None:
        assert kms.key_state(kek) == "Enabled"
    breaks(kms, kek)
    try:
        if state is not None:
            assert kms.key_state(kek) == state
        started = time.monotonic()
        assert _cause(lambda: provider.unwrap(kek, key.wrapped, CONTEXT)) == cause
        assert time.monotonic() - started < 10  # within seconds, also when KMS is down
        assert _cause(lambda: provider.generate_data_key(kek, CONTEXT)) == cause
        assert _cause(lambda: provider.check(kek)) == cause
    finally:
        undoes(kms, kek)
    assert provider.unwrap(kek, key.wrapped, CONTEXT) == key.plaintext  # same object
    provider.check(kek)


def test_the_emulator_refuses_with_awss_error_bodies(kms):
    """What boto3 itself sees from the proxy: AWS's code, HTTP 400, x-amzn-ErrorType."""
    kek = kms.create_key()
    kms.disable(kek)
    with pytest.raises(ClientError) as refused:
        kms.client().encrypt(KeyId=kek, Plaintext=b"x")
    answer = refused.value.response
    assert answer["Error"]["Code"] == "DisabledException"
    assert answer["Error"]["Message"] == f"{kek} is disabled."
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"].startswith("Disabled")
    kms.schedule_deletion(kek)
    with pytest.raises(ClientError) as refused:
        kms.client().generate_data_key(KeyId=kek, KeySpec="AES_256")
    assert refused.value.response["Error"] == {
        "Code": "KMSInvalidStateException",
        "Message": f"{kek} is pending deletion.",
    }
    kms.cancel_deletion(kek)
    assert kms.key_state(kek) == "Disabled"  # as AWS leaves it
    kms.enable(kek)
    assert kms.client().encrypt(KeyId=kek, Plaintext=b"x")["KeyId"] == kek


def test_aliases_and_keys_in_other_regions_are_refused_as_invalid_keys(kms, provider):
    kek = kms.create_key()
    kms.client().create_alias(AliasName="alias/tenant-a", TargetKeyId=kek)
    alias_arn = kek.rsplit(":", 1)[0] + ":alias/tenant-a"
    assert kms.client().describe_key(KeyId=alias_arn)["KeyMetadata"]["Arn"] == kek  # it works
    for alias in ("alias/tenant-a", alias_arn):
        with pytest.raises(InvalidKey, match="alias"):
            provider.generate_data_key(alias, CONTEXT)
    stockholm = kms.create_key("eu-north-1")  # exists, but not in an allowed region
    with pytest.raises(InvalidKey, match="'eu-north-1' is not an allowed region"):
        provider.generate_data_key(stockholm, CONTEXT)
    with pytest.raises(InvalidKey, match="'eu-north-1' is not an allowed region"):
        provider.check(stockholm)
    wider = AwsKms(
        platform_key=kms.platform_key,
        endpoint_url=kms.endpoint_url,
        allowed_regions=(CENTRAL, "eu-north-1"),
    )
    wider.check(stockholm)  # positive control: the key itself is usable


def test_a_provider_from_settings_uses_the_emulators_platform_key(kms):
    settings = config.load(
        development=True,
        kms_provider="aws",
        kms_key_id=kms.platform_key,
        kms_endpoint_url=kms.endpoint_url,
        kms_region="",  # not the session's environment: the platform key's region
        allowed_regions=(CENTRAL,),
    )
    provider = AwsKms.from_settings(settings)
    assert provider.platform_key() == kms.platform_key
    key = provider.generate_data_key(provider.platform_key(), CONTEXT)
    assert provider.unwrap(kms.platform_key, key.wrapped, CONTEXT) == key.plaintext
