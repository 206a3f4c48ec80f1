"""The AWS key provider's rules that need no KMS (core/keys/aws.py): which cause each AWS
refusal becomes, how its clients are configured, and which platform keys and regions it
refuses to start with."""

from __future__ import annotations

import pytest
from botocore import exceptions as boto

from ontrackio.core import config
from ontrackio.core.keys.aws import CLIENT_CONFIG, AwsKms, refusal
from ontrackio.core.keys.kms import InvalidKey

KEY = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
WEST = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _client_error(code: str, message: str = "", status: int = 400) -> boto.ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return boto.ClientError(response, "Decrypt")


@pytest.mark.parametrize(
    ("code", "message", "status", "cause"),
    [
        ("DisabledException", f"{KEY} is disabled.", 400, "disabled"),
        ("KMSInvalidStateException", f"{KEY} is pending deletion.", 400, "pending_deletion"),
        ("KMSInvalidStateException", f"{KEY} is pending import.", 400, "pending_deletion"),
        ("KMSInvalidStateException", "", 400, "pending_deletion"),
        ("KMSInvalidStateException", f"{KEY} is disabled.", 400, "disabled"),
        ("KMSInvalidStateException", f"{KEY} is unavailable.", 400, "unreachable"),
        ("AccessDeniedException", "User: x is not authorized", 400, "access_denied"),
        ("AccessDenied", "", 403, "access_denied"),
        ("InvalidGrantTokenException", "", 400, "access_denied"),
        ("UnrecognizedClientException", "", 400, "access_denied"),
        ("NotFoundException", f"Key '{KEY}' does not exist", 400, "not_found"),
        ("InvalidCiphertextException", "", 400, "invalid"),
        ("IncorrectKeyException", "", 400, "invalid"),
        ("InvalidKeyUsageException", "", 400, "invalid"),
        ("ThrottlingException", "Rate exceeded", 400, "unreachable"),
        ("KeyUnavailableException", "", 500, "unreachable"),
        ("KMSInternalException", "", 500, "unreachable"),
        ("DependencyTimeoutException", "", 503, "unreachable"),
        ("SomethingNewException", "", 503, "unreachable"),  # any 5xx
        ("SomethingNewException", "", 400, "invalid"),
        ("500", "<html>Internal Server Error</html>", 500, "unreachable"),
    ],
)
def test_each_aws_refusal_becomes_its_cause(code, message, status, cause):
    refused = refusal(_client_error(code, message, status))
    assert refused.cause == cause
    assert KEY not in str(refused)  # the caller's message names the cause only


@pytest.mark.parametrize(
    ("exc", "cause"),
    [
        (boto.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "unreachable"),
        (boto.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), "unreachable"),
        (boto.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), "unreachable"),
        (boto.ConnectionClosedError(endpoint_url="http://127.0.0.1:1"), "unreachable"),
        (boto.NoCredentialsError(), "access_denied"),
        (
            boto.CredentialRetrievalError(provider="iam-role", error_msg="timed out"),
            "access_denied",
        ),
        (boto.ParamValidationError(report="CiphertextBlob: too short"), "invalid"),
    ],
)
def test_transport_and_client_failures_become_their_cause(exc, cause):
    assert refusal(exc).cause == cause


def test_clients_give_up_within_seconds():
    """Connect 2 s, read 5 s, two attempts (standard mode backs off 50 ms at most between
    them, 1 s for throttling): a KMS that accepts and never answers fails a request after
    about 10 s, one whose packets are dropped after about 4 s, a refused connection at once."""
    assert (CLIENT_CONFIG.connect_timeout, CLIENT_CONFIG.read_timeout) == (2, 5)
    assert CLIENT_CONFIG.retries == {"mode": "standard", "total_max_attempts": 2}


def _no_kms(region: str):
    raise AssertionError(f"a KMS client of {region} was asked for")


@pytest.mark.parametrize(
    ("platform", "region", "allowed", "refused"),
    [
        ("alias/platform", "", ("eu-central-1",), "platform key: a KMS alias is not accepted"),
        (KEY.replace(":key/", ":alias/"), "", ("eu-central-1",), "platform key: a KMS alias"),
        ("", "", ("eu-central-1",), "platform key: not a KMS key ARN"),
        (WEST, "", ("eu-central-1",), "platform key: key region 'eu-west-1' is not an allowed"),
        (KEY, "eu-west-1", ("eu-central-1",), "KMS region 'eu-west-1' is not an allowed region"),
        (KEY, "eu-west-1", ("eu-central-1", "eu-west-1"), "platform key: in 'eu-central-1'"),
    ],
)
def test_a_provider_refuses_to_start_with_a_platform_key_it_cannot_use(
    platform, region, allowed, refused
):
    with pytest.raises(InvalidKey, match=refused):
        AwsKms(
            platform_key=platform, region=region, allowed_regions=allowed, client_factory=_no_kms
        )


def test_settings_name_the_platform_key_its_region_and_the_endpoint():
    settings = config.load(
        development=True,
        kms_provider="aws",
        kms_key_id=WEST,
        allowed_regions=("eu-central-1", "eu-west-1"),
        kms_endpoint_url="http://127.0.0.1:4566",
        kms_region="",  # whatever the session's environment says: the key's region
    )
    kms = AwsKms.from_settings(settings)
    assert (kms.name, kms.platform_key(), kms.region) == ("aws", WEST, "eu-west-1")
    assert kms.endpoint_url == "http://127.0.0.1:4566"
    assert kms.region_of(KEY) == "eu-central-1"  # another allowed region: a BYO key there
