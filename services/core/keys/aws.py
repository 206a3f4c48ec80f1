"""The AWS KMS key provider (``kms_provider = "aws"``), through boto3's ``kms`` client.

Keys are named by full key ARN only, ``arn:aws:kms:<region>:<account>:key/<key id>``: an
alias is refused (``InvalidKey``), because a tenant must name the key itself (an alias can
be pointed at another key later, by whoever controls it), and so is a key in a region
outside ``allowed_regions``. Each region a key lives in gets a client of its own, signed
for that region: a customer's own key (BYO-KMS) may be in another allowed region.

An unreachable KMS fails within seconds (connect 2 s, read 5 s, two attempts in botocore's
standard retry mode), never hangs a request. AWS's refusals become ``KeyUnavailable(cause)``
(``refusal``; docs/keys.md, AWS KMS). Neither key material nor ciphertext is ever logged
or put in a message: only the operation, the key ARN and AWS's error code.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore import exceptions as boto
from botocore.config import Config

from ontrackio.core.keys.kms import DATA_KEY_BYTES, DataKey, InvalidKey, KeyUnavailable

__all__ = ["AwsKms", "KeyArn", "parse_key_arn", "refusal"]

log = logging.getLogger(__name__)

CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "total_max_attempts": 2},
    # The endpoint is ONTRACK_KMS_ENDPOINT_URL or the region's own, both checked for
    # residency at start; AWS_ENDPOINT_URL(_KMS) or a config file's endpoint_url, which
    # the check does not see, must not redirect it.
    ignore_configured_endpoint_urls=True,
)

# What `check` encrypts its test value with: names no tenant, so a check's CloudTrail entry
# is told apart from real use.
CHECK_CONTEXT = {"ontrack:purpose": "key-check"}

MAX_REFERENCE = 2048  # AWS's own limit on a KeyId
_ARN = re.compile(
    r"arn:aws:kms:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}):(?P<account>[0-9]{12}):"
    r"key/(?P<key_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|mrk-[0-9a-f]{32})"
)
ARN_FORM = "arn:aws:kms:<region>:<12-digit account>:key/<key id>"


@dataclass(frozen=True)
class KeyArn:
    region: str
    account: str
    key_id: str  # a UUID, or mrk- and 32 hex digits for a multi-Region key

    def __str__(self) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:key/{self.key_id}"


def parse_key_arn(text: object) -> KeyArn:
    """The parts of a KMS key ARN; ``InvalidKey`` (and nothing else) for any other value,
    an alias saying so. Only the ``aws`` partition; lower-case key ids, as AWS spells them.
    The message never repeats `text` (it may be anything)."""
    if not isinstance(text, str) or len(text) > MAX_REFERENCE:  # (no regex over megabytes)
        raise InvalidKey(f"not a KMS key ARN ({ARN_FORM})")
    found = _ARN.fullmatch(text)
    if found is None:
        if text.startswith("alias/") or (text.startswith("arn:") and ":alias/" in text):
            raise InvalidKey("a KMS alias is not accepted: name the key itself by its key ARN")
        raise InvalidKey(f"not a KMS key ARN ({ARN_FORM})")
    return KeyArn(**found.groupdict())


# AWS error codes (botocore ClientError) -> cause. KMSInvalidStateException is read from its
# message (`_invalid_state`); 5xx and throttling that outlasted the retries are "unreachable".
CAUSE_OF_CODE = {
    "DisabledException": "disabled",
    "AccessDeniedException": "access_denied",
    "AccessDenied": "access_denied",
    "InvalidGrantTokenException": "access_denied",
    "InvalidGrantIdException": "access_denied",
    "UnrecognizedClientException": "access_denied",  # credentials refused
    "InvalidSignatureException": "access_denied",
    "ExpiredTokenException": "access_denied",
    "NotFoundException": "not_found",
    "InvalidCiphertextException": "invalid",
    "IncorrectKeyException": "invalid",
    "InvalidKeyUsageException": "invalid",
    "InvalidArnException": "invalid",
    "KeyUnavailableException": "unreachable",  # AWS: "You can retry the request"
    "DependencyTimeoutException": "unreachable",
    "KMSInternalException": "unreachable",
    "ThrottlingException": "unreachable",
    "Throttling": "unreachable",
    "RequestLimitExceeded": "unreachable",
    "LimitExceededException": "unreachable",
}


def _invalid_state(message: str) -> str:
    """The cause of a KMSInvalidStateException. AWS names the state in the message ("<arn>
    is pending deletion", "... is disabled", "... is pending import", "... is unavailable"
    for a disconnected custom key store); pending deletion is by far the common case, so it
    is the default unless the message says disabled or unavailable (pending import, and any
    state AWS adds, count as pending deletion: the key cannot be used until someone acts)."""
    said = message.lower()
    if "disabled" in said:
        return "disabled"
    if "unavailable" in said:
        return "unreachable"
    return "pending_deletion"


NO_CREDENTIALS = (
    boto.NoCredentialsError,
    boto.PartialCredentialsError,
    boto.CredentialRetrievalError,
)


def refusal(exc: Exception) -> KeyUnavailable:
    """The KeyUnavailable a botocore failure stands for."""
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "KMSInvalidStateException":
            return KeyUnavailable(_invalid_state(str(error.get("Message", ""))))
        if code in CAUSE_OF_CODE:
            return KeyUnavailable(CAUSE_OF_CODE[code])
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return KeyUnavailable("unreachable" if status >= 500 else "invalid")
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return KeyUnavailable("unreachable")  # refused, timed out, reset; after the retries
    if isinstance(exc, NO_CREDENTIALS):
        return KeyUnavailable("access_denied")  # no credentials to sign with
    return KeyUnavailable("invalid")  # ParamValidationError (an empty blob) and the like


class AwsKms:
    """KeyProvider on AWS KMS (``ontrackio.core.keys.kms.KeyProvider``).

    `platform_key`: the platform's KEK (a key ARN). `region`: the region of the KMS endpoint
    the platform key is used through (default: the platform key's region; the two must
    agree). `endpoint_url`: one URL for every region's client (a VPC endpoint, which serves
    its own region only, or the KMS emulator, which serves all). `client_factory(region)`
    makes a client; by default a boto3 ``kms`` client with ``CLIENT_CONFIG``. Raises
    InvalidKey when the platform key or `region` is not usable here."""

    name = "aws"

    def __init__(
        self,
        *,
        platform_key: str,
        region: str = "",
        endpoint_url: str | None = None,
        allowed_regions: tuple[str, ...],
        client_factory: Callable[[str], Any] | None = None,
    ):
        self.allowed_regions = tuple(allowed_regions)
        try:
            platform = self._key(platform_key)
        except InvalidKey as exc:
            raise InvalidKey(f"platform key: {exc}") from None
        self.region = region or platform.region
        if self.region not in self.allowed_regions:
            raise InvalidKey(f"KMS region {self.region!r} is not an allowed region")
        if self.region != platform.region:
            raise InvalidKey(
                f"platform key: in {platform.region!r}, not in the KMS region {self.region!r}"
            )
        self._platform_key = str(platform)
        self.endpoint_url = endpoint_url or None
        self._factory = client_factory or _boto3_factory(self.endpoint_url)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> AwsKms:
        return cls(
            platform_key=settings.kms_key_id,
            region=settings.kms_region,
            endpoint_url=settings.kms_endpoint_url or None,
            allowed_regions=tuple(settings.allowed_regions),
        )

    # -- KeyProvider ---------------------------------------------------------------------------

    def platform_key(self) -> str:
        return self._platform_key

    def region_of(self, kek: str) -> str:
        return self._key(kek).region

    def generate_data_key(self, kek: str, context: Mapping[str, str]) -> DataKey:
        answer = self._call(
            kek, "generate_data_key", KeyId=kek, KeySpec="AES_256", EncryptionContext=context
        )
        plaintext = answer["Plaintext"]
        if len(plaintext) != DATA_KEY_BYTES:
            raise KeyUnavailable("invalid")
        return DataKey(plaintext=plaintext, wrapped=answer["CiphertextBlob"])

    def unwrap(self, kek: str, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        answer = self._call(
            kek, "decrypt", CiphertextBlob=wrapped, KeyId=kek, EncryptionContext=context
        )
        if len(answer["Plaintext"]) != DATA_KEY_BYTES:
            raise KeyUnavailable("invalid")
        return answer["Plaintext"]

    def rewrap(
        self, source: str, destination: str, wrapped: bytes, context: Mapping[str, str]
    ) -> bytes:
        """ReEncrypt when both keys are in one region: KMS decrypts under `source` and
        encrypts under `destination` inside itself, so the data key never reaches this
        process. A key is regional and one call reaches one region, so a move to another
        allowed region (a BYO key there) is Decrypt in the source region and Encrypt in the
        destination's: the data key passes through this process, as it does for every
        unwrap, and is dropped at once."""
        src, dst = self._key(source), self._key(destination)
        if src.region == dst.region:
            answer = self._call(
                source,
                "re_encrypt",
                CiphertextBlob=wrapped,
                SourceKeyId=source,
                SourceEncryptionContext=context,
                DestinationKeyId=destination,
                DestinationEncryptionContext=context,
            )
            return answer["CiphertextBlob"]
        plaintext = self.unwrap(source, wrapped, context)
        return self._encrypt(destination, plaintext, context)["CiphertextBlob"]

    def check(self, kek: str, context: Mapping[str, str] = CHECK_CONTEXT) -> None:
        probe = os.urandom(DATA_KEY_BYTES)
        sealed = self._encrypt(kek, probe, context)["CiphertextBlob"]
        opened = self._call(
            kek, "decrypt", CiphertextBlob=sealed, KeyId=kek, EncryptionContext=dict(context)
        )
        if opened["Plaintext"] != probe:
            raise KeyUnavailable("invalid")

    # -- internals -----------------------------------------------------------------------------

    def _key(self, kek: object) -> KeyArn:
        arn = parse_key_arn(kek)
        if arn.region not in self.allowed_regions:
            raise InvalidKey(f"key region {arn.region!r} is not an allowed region")
        return arn

    def _encrypt(self, kek: str, plaintext: bytes, context: Mapping[str, str]) -> dict:
        return self._call(kek, "encrypt", KeyId=kek, Plaintext=plaintext, EncryptionContext=context)

    def _client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = self._clients[region] = self._factory(region)
            return client

    def _call(self, kek: str, operation: str, **params: Any) -> dict[str, Any]:
        client = self._client(self._key(kek).region)
        # botocore takes a dict, not any Mapping, for an encryption context
        params = {k: dict(v) if isinstance(v, Mapping) else v for k, v in params.items()}
        try:
            return getattr(client, operation)(**params)
        except (boto.ClientError, boto.BotoCoreError) as exc:
            refused = refusal(exc)
            what = exc.response["Error"].get("Code") if isinstance(exc, boto.ClientError) else ""
            log.warning(
                "KMS %s with %s refused: %s (%s)",
                operation,
                kek,
                refused.cause,
                what or type(exc).__name__,
            )
            raise refused from None


def _boto3_factory(endpoint_url: str | None) -> Callable[[str], Any]:
    """One boto3 session (credentials from its usual chain) for every region's client;
    called under AwsKms's lock, as a session is not thread-safe."""
    session = boto3.session.Session()

    def make(region: str) -> Any:
        return session.client(
            "kms", region_name=region, endpoint_url=endpoint_url, config=CLIENT_CONFIG
        )

    return make
