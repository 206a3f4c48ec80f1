"""WebAuthn passkeys for identity's MFA and passwordless sign-in, over py_webauthn. Pure: no
I/O. The store keeps, per credential, what ``verify_registration`` returns (credential id,
COSE public key, sign count, transports, backup state) and the name ``validate_name`` gives.

The relying party (RP) id is the tenant's exact host name (``acme.ontrack.example``), never a
parent domain, and the only origin accepted is ``origin_for(host)``, ``https://`` + host.
Browsers scope a passkey to its RP id, and the RP id hash in the authenticator data and the
origin in the client data are both checked here, so a passkey made for one tenant cannot be
used at another tenant's host (nor at the same tenant's custom domain, another host).

Registration options (``registration_options``) ask for: attestation ``none`` (we do not vet
authenticator makes, and asking for attestation prompts the user and names their device);
a discoverable credential (resident key ``required``: sign-in without typing a name first);
user verification ``required`` or ``preferred`` (the tenant's policy); py_webauthn's
algorithms (EdDSA, ES256, RS256); the user's existing credentials excluded, so the same
authenticator is not registered twice. Challenges are ``CHALLENGE_BYTES`` (32) of
``secrets`` randomness (WebAuthn asks for at least 16); the caller keeps the challenge with
the ceremony and passes it to the verification, once: reuse is the caller's to prevent.

Every response is read here before py_webauthn sees it, strictly, because py_webauthn reads
loosely (base64 that skips stray characters, CBOR with trailing bytes and any semantic tag,
a raw KeyError, ValueError or RecursionError escaping on some malformed input, a CBOR integer
for the authenticator data allocated as that many bytes): at most ``MAX_RESPONSE_CHARS``
characters (checked first), one JSON object without duplicate keys in the shape browsers'
``PublicKeyCredential.toJSON()`` gives, binary fields in canonical base64url without padding,
``clientDataJSON`` a UTF-8 JSON object, the attestation object CBOR of maps, arrays, strings
and integers only (no tags, no trailing bytes), the authenticator data well formed. What
fails that, or what py_webauthn still cannot read, is InvalidPasskey. Unknown fields are
ignored (browsers add some), but the ones read must have their types.

What reads but does not verify is PasskeyRefused, whose ``reason`` (one of ``REASON_*``)
goes to the audit trail; the user is told only that the passkey was not accepted. On top
of py_webauthn's checks: ``crossOrigin`` true is refused (our pages are never framed); at
registration, the credential id in the authenticator data must be the response's ``rawId``
and the public key must be a usable EdDSA (Ed25519), ES256 (P-256) or RS256 (2048 bits or
more) key (py_webauthn only decodes it, so a key off its curve would be stored and then
fail every sign-in).

The signature counter (WebAuthn L2 section 6.1.1, step 21): when either the stored or the
new count is non-zero and the new one is not greater, the credential may have been cloned:
PasskeyCloned. Both zero is an authenticator that does not count (most synced passkeys) and
is accepted. py_webauthn has this check too, but makes it before verifying the signature,
so its error would come for a response nobody signed, and flagging a credential as cloned
on such a response would let anyone who can post a response get a user's passkey flagged.
So py_webauthn is given a stored count of 0 (its check never fires) and the check is made
here, after the signature verified.

For discoverable sign-in (``authentication_options`` with no ``allow``), the store finds
the credential by the ``credential_id`` of ``read_assertion``'s answer and may read its
``user_handle`` (``credential_id_of`` and ``user_handle_of`` read one alone); the user handle is
not covered by the signature, so the user is the one the found credential belongs to, and
a user handle naming anyone else must be refused by the caller (WebAuthn section 7.2,
step 6).
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cbor2
import webauthn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography
from webauthn.helpers import exceptions as wa
from webauthn.helpers.cose import COSECRV, COSEAlgorithmIdentifier
from webauthn.helpers.decode_credential_public_key import (
    DecodedEC2PublicKey,
    DecodedOKPPublicKey,
    DecodedRSAPublicKey,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ontrackio.identity.errors import InvalidPasskey, PasskeyCloned, PasskeyRefused

RP_NAME = "OnTrackio"
# 256 bits of challenge (WebAuthn section 13.4.3 asks for at least 16 bytes).
CHALLENGE_BYTES = 32
# How long the browser may wait for the user (a hint: browsers may ignore it), 5 minutes.
TIMEOUT_MS = 300_000
# Passkeys one user may have: the store refuses another beyond this.
MAX_CREDENTIALS_PER_USER = 20
MAX_NAME_CHARS = 64
# The JSON a browser posts: a few KiB for a passkey, far more for an RSA attestation chain.
MAX_RESPONSE_CHARS = 64 * 1024
# WebAuthn: a credential id is at most 1023 bytes, a user handle at most 64.
MAX_CREDENTIAL_ID_BYTES = 1023
MAX_USER_HANDLE_BYTES = 64
USER_VERIFICATION = ("required", "preferred")

# Why a response was refused (PasskeyRefused.reason, for the audit trail).
REASON_TYPE = "ceremony-type"  # clientData.type is not webauthn.create / webauthn.get
REASON_CHALLENGE = "challenge"
REASON_ORIGIN = "origin"
REASON_CROSS_ORIGIN = "cross-origin"
REASON_TOKEN_BINDING = "token-binding"
REASON_RP_ID = "rp-id"
REASON_USER_PRESENCE = "user-presence"
REASON_USER_VERIFICATION = "user-verification"
REASON_CREDENTIAL_ID = "credential-id"
REASON_CREDENTIAL_DATA = "credential-data"  # no attested credential data, id, key or AAGUID
REASON_ALGORITHM = "algorithm"
REASON_PUBLIC_KEY = "public-key"
REASON_ATTESTATION = "attestation"
REASON_BACKUP_FLAGS = "backup-flags"  # backed up (BS) but not backup eligible (BE)
REASON_SIGNATURE = "signature"
REASON_OTHER = "other"

# py_webauthn's messages (InvalidRegistrationResponse, InvalidAuthenticationResponse), by
# how they start, and our reason; None: the library could not read the response.
_MESSAGES = (
    ("clientDataJSON was malformed", None),
    ("attestationObject was malformed", None),
    ("authenticatorData was malformed", None),
    ("malformed attestation type", None),
    ("Could not parse", None),
    ("id and raw_id were not equivalent", REASON_CREDENTIAL_ID),
    ("Unexpected credential type", REASON_TYPE),
    ("Unexpected client data type", REASON_TYPE),
    ("Client data challenge was not expected challenge", REASON_CHALLENGE),
    ("Unexpected client data origin", REASON_ORIGIN),
    ("Unexpected token_binding status", REASON_TOKEN_BINDING),
    ("Unexpected RP ID hash", REASON_RP_ID),
    ("User presence was required", REASON_USER_PRESENCE),
    ("User was not present", REASON_USER_PRESENCE),
    ("User verification is required", REASON_USER_VERIFICATION),
    ("Authenticator did not provide", REASON_CREDENTIAL_DATA),
    ("Unsupported credential public key alg", REASON_ALGORITHM),
    ("None attestation had unexpected attestation statement", REASON_ATTESTATION),
    ("Unsupported attestation type", REASON_ATTESTATION),
    ("Attestation statement could not be verified", REASON_ATTESTATION),
    ("Could not verify authentication signature", REASON_SIGNATURE),
)
# The attestation formats' own checks name their format at the end: "... (Packed)",
# "... (Packed|Self)", "... (SafetyNet" (sic).
_FORMATS = "Packed|TPM|Apple|FIDO-U2F|Android Key|SafetyNet"
_FORMAT_SUFFIX = re.compile(rf"\((?:{_FORMATS})\b[^()]*\)?\Z")
_PUBLIC_KEY_ERRORS = (
    wa.InvalidPublicKeyStructure,
    wa.UnsupportedPublicKeyType,
    wa.UnsupportedPublicKey,
    wa.UnsupportedAlgorithm,
    wa.UnsupportedEC2Curve,
)
_UNREADABLE_ERRORS = (
    wa.InvalidJSONStructure,
    wa.InvalidCBORData,
    wa.InvalidAuthenticatorDataStructure,
    wa.InvalidAttestationObjectStructure,
)

_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
# A DNS host name in lower case: labels of letters, digits and inner hyphens, 253 at most.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")
# Control, format (bidi and zero-width), surrogate, line and paragraph separator characters.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)
# CBOR in an attestation object: maps, arrays, text and byte strings, integers, booleans.
_CBOR_TYPES = (dict, list, str, bytes, int)
_CBOR_DEPTH = 8
_FLAG_AT = 0x40
_FLAG_ED = 0x80
_AUTH_DATA_MIN = 37  # rpIdHash (32), flags (1), signCount (4)
_MAX_SIGN_COUNT = 2**32 - 1
_RSA_MIN_BITS = 2048
_REFUSED_MESSAGE = "The passkey was not accepted."


@dataclass(frozen=True)
class Registered:
    """A verified new credential, as the store keeps it. ``public_key`` is the COSE key;
    ``aaguid`` the make the authenticator claims (unattested: we ask for no attestation, and
    py_webauthn checks no certificate chain without root certificates, so it is a label to
    show, never a basis for trust); ``device_type`` is ``single_device`` or
    ``multi_device`` (backup eligible: a synced passkey); ``transports`` are the known ones
    the browser reported, for allow lists."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    backed_up: bool
    device_type: str
    transports: tuple[str, ...]


@dataclass(frozen=True)
class Asserted:
    """A verified sign-in with a credential: the store keeps ``new_sign_count`` as the
    credential's count, and ``backed_up`` (it can change)."""

    credential_id: bytes
    new_sign_count: int
    user_verified: bool
    backed_up: bool


@dataclass(frozen=True)
class Answer:
    """A response as read by this module (``read_assertion``): what is passed to
    py_webauthn, and what this module checks itself. Reading it once serves the look-up of
    the credential, its verification and the user handle's check."""

    credential: dict[str, Any]
    credential_id: bytes
    user_handle: bytes | None
    cross_origin: bool
    transports: tuple[str, ...]


# -- options -------------------------------------------------------------------------------


def registration_options(
    *,
    rp_id: str,
    user_handle: bytes,
    user_name: str,
    display_name: str,
    exclude: list[bytes],
    user_verification: str,
) -> tuple[str, bytes]:
    """The options for ``navigator.credentials.create`` as py_webauthn's JSON (binary values
    in base64url; the browser's ``PublicKeyCredential.parseCreationOptionsFromJSON`` reads
    it), and the new challenge, for the caller to keep for ``verify_registration``.

    ``user_handle`` is the user's opaque WebAuthn id (not the email: it is stored on the
    authenticator and returned at discoverable sign-in); ``user_name`` (the email, say) and
    ``display_name`` are what the authenticator shows (``display_name`` empty: the user
    name); ``exclude`` the ids of the user's credentials.

    Raises ValueError when ``rp_id`` is not a lower-case host name, ``user_handle`` is not
    1 to 64 bytes, ``user_name`` is empty, an ``exclude`` id is not 1 to 1023 bytes, or
    ``user_verification`` is not ``required`` or ``preferred``.
    """
    _check_host(rp_id)
    if not isinstance(user_handle, bytes) or not 1 <= len(user_handle) <= MAX_USER_HANDLE_BYTES:
        raise ValueError(f"the user handle must be 1 to {MAX_USER_HANDLE_BYTES} bytes")
    if not isinstance(user_name, str) or not user_name:
        raise ValueError("the user name must not be empty")
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = webauthn.generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name or user_name,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=_user_verification(user_verification),
        ),
        exclude_credentials=_descriptors(exclude),
    )
    return webauthn.options_to_json(options), challenge


def authentication_options(
    *, rp_id: str, allow: list[bytes], user_verification: str
) -> tuple[str, bytes]:
    """The options for ``navigator.credentials.get`` as py_webauthn's JSON, and the new
    challenge, for the caller to keep for ``verify_authentication``. ``allow`` the ids of
    the credentials that may answer (a known user's); empty: any discoverable credential
    for ``rp_id`` may (passwordless sign-in, the user found from the credential).

    Raises ValueError when ``rp_id`` is not a lower-case host name, an ``allow`` id is not
    1 to 1023 bytes, or ``user_verification`` is not ``required`` or ``preferred``.
    """
    _check_host(rp_id)
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options = webauthn.generate_authentication_options(
        rp_id=rp_id,
        challenge=challenge,
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(allow),
        user_verification=_user_verification(user_verification),
    )
    return webauthn.options_to_json(options), challenge


def origin_for(host: str) -> str:
    """The one origin accepted for a tenant's host, which is also its RP id:
    ``https://`` + host (no port: the tenant is served on 443).

    Raises ValueError when ``host`` is not a lower-case host name.
    """
    _check_host(host)
    return "https://" + host


# -- responses -----------------------------------------------------------------------------


def verify_registration(
    response_json: str,
    *,
    challenge: bytes,
    rp_id: str,
    origin: str,
    require_user_verification: bool,
) -> Registered:
    """The new credential of a ``navigator.credentials.create`` response (its ``toJSON()``),
    once verified against the ``challenge`` that ``registration_options`` gave, ``rp_id``
    and ``origin``: user presence always, user verification when required.

    Raises ValueError when ``challenge`` is empty, ``rp_id`` is not a host name or
    ``origin`` is not text; InvalidPasskey when the response cannot be read (see the
    module's docstring); PasskeyRefused when it does not verify (``reason``: one of the
    ``REASON_*``).
    """
    _check_ceremony(challenge, rp_id, origin)
    read = _read_registration(response_json)
    verified = _verified(
        webauthn.verify_registration_response,
        read,
        expected_challenge=challenge,
        expected_rp_id=rp_id,
        expected_origin=origin,
        require_user_verification=require_user_verification,
    )
    if verified.credential_id != read.credential_id:
        raise PasskeyRefused(_REFUSED_MESSAGE, REASON_CREDENTIAL_ID)
    if not _usable_key(verified.credential_public_key):
        raise PasskeyRefused(_REFUSED_MESSAGE, REASON_PUBLIC_KEY)
    return Registered(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid,
        backed_up=verified.credential_backed_up,
        device_type=verified.credential_device_type.value,
        transports=read.transports,
    )


def credential_id_of(response_json: str) -> bytes:
    """The credential id (``rawId``) of a ``navigator.credentials.get`` response, read
    before verifying so the store can find the credential's public key and count.

    Raises InvalidPasskey when the response cannot be read (the whole response is read, as
    ``verify_authentication`` reads it).
    """
    return read_assertion(response_json).credential_id


def user_handle_of(response_json: str) -> bytes | None:
    """The user handle a ``navigator.credentials.get`` response carries (a discoverable
    credential's), or None when it carries none (null, empty or absent). Not signed: the
    credential found by ``credential_id_of`` says whose it is.

    Raises InvalidPasskey when the response cannot be read, or the user handle is more than
    64 bytes.
    """
    return read_assertion(response_json).user_handle


def verify_authentication(
    answer: Answer | str,
    *,
    challenge: bytes,
    rp_id: str,
    origin: str,
    public_key: bytes,
    stored_sign_count: int,
    require_user_verification: bool,
) -> Asserted:
    """The verified sign-in of a ``navigator.credentials.get`` response (its ``toJSON()``,
    or the ``Answer`` that ``read_assertion`` read from it), against the ``challenge`` that
    ``authentication_options`` gave, ``rp_id``, ``origin`` and the credential's stored COSE
    ``public_key`` and count: user presence always, user verification when required, the
    signature, then the counter rule of the module's docstring.

    Raises ValueError when ``challenge`` is empty, ``rp_id`` is not a host name, ``origin``
    is not text, ``stored_sign_count`` is not 0 to 2**32 - 1 or ``public_key`` is not a
    usable COSE key (stored data that is wrong, not the user's input); InvalidPasskey when
    the response cannot be read; PasskeyCloned when the counter did not go up (and is not 0 on both
    sides); PasskeyRefused when it does not verify otherwise.
    """
    _check_ceremony(challenge, rp_id, origin)
    if type(stored_sign_count) is not int or not 0 <= stored_sign_count <= _MAX_SIGN_COUNT:
        raise ValueError("the stored sign count must be 0 to 2**32 - 1")
    if not isinstance(public_key, bytes) or not _usable_key(public_key):
        raise ValueError("the stored public key is not a usable COSE key")
    read = answer if isinstance(answer, Answer) else read_assertion(answer)
    verified = _verified(
        webauthn.verify_authentication_response,
        read,
        expected_challenge=challenge,
        expected_rp_id=rp_id,
        expected_origin=origin,
        credential_public_key=public_key,
        # 0: py_webauthn's own counter check, made before the signature's, never fires.
        credential_current_sign_count=0,
        require_user_verification=require_user_verification,
    )
    new = verified.new_sign_count
    if (new or stored_sign_count) and new <= stored_sign_count:
        raise PasskeyCloned("The passkey's counter went backwards: it may have been copied.")
    return Asserted(
        credential_id=verified.credential_id,
        new_sign_count=new,
        user_verified=verified.user_verified,
        backed_up=verified.credential_backed_up,
    )


def validate_name(name: str) -> str:
    """A passkey's name as the user gave it (``Work laptop``), stripped of surrounding
    white space.

    Raises InvalidPasskey when it is not text, is empty or longer than MAX_NAME_CHARS once
    stripped, or holds control, format (bidi, zero-width), surrogate or line-separator
    characters; the message never echoes the name.
    """
    message = f"A passkey's name is 1 to {MAX_NAME_CHARS} characters, without control characters."
    if not isinstance(name, str):
        raise InvalidPasskey(message)
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidPasskey(message)
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in name):
        raise InvalidPasskey(message)
    return name


# -- reading -------------------------------------------------------------------------------


def _unreadable(what: str) -> InvalidPasskey:
    return InvalidPasskey(f"The passkey's answer could not be read ({what}).")


def _check_host(host: str) -> None:
    if not isinstance(host, str) or not _HOST.match(host):
        raise ValueError("the RP id must be a lower-case host name")


def _check_ceremony(challenge: bytes, rp_id: str, origin: str) -> None:
    _check_host(rp_id)
    if not isinstance(origin, str) or not origin:  # one origin: py_webauthn takes lists too
        raise ValueError("the origin must be one origin, as origin_for gives it")
    if not isinstance(challenge, bytes) or not challenge:
        raise ValueError("the challenge must be the bytes the options were given")


def _user_verification(value: str) -> UserVerificationRequirement:
    if value not in USER_VERIFICATION:
        raise ValueError("user verification must be 'required' or 'preferred'")
    return UserVerificationRequirement(value)


def _descriptors(ids: Iterable[bytes]) -> list[PublicKeyCredentialDescriptor]:
    out = []
    for cid in ids:
        if not isinstance(cid, bytes) or not 1 <= len(cid) <= MAX_CREDENTIAL_ID_BYTES:
            raise ValueError(f"a credential id must be 1 to {MAX_CREDENTIAL_ID_BYTES} bytes")
        out.append(PublicKeyCredentialDescriptor(id=cid))
    return out


def _b64(value: Any, what: str) -> bytes:
    """Canonical base64url without padding, decoded."""
    if not isinstance(value, str) or not _B64URL.match(value) or len(value) % 4 == 1:
        raise _unreadable(what)
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != value:
        raise _unreadable(what)  # stray bits in the last character
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _unreadable(what) from exc
    if not isinstance(value, dict):
        raise _unreadable(what)
    return value


def _plain_cbor(value: Any, depth: int = 0) -> bool:
    if depth > _CBOR_DEPTH or not isinstance(value, _CBOR_TYPES):
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str | int) and _plain_cbor(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_cbor(v, depth + 1) for v in value)
    return True


def _cbor(data: bytes, what: str, *, whole: bool = True) -> tuple[Any, int]:
    """The first CBOR item of ``data`` (plain types only), and the bytes it took."""
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream, allow_duplicate_keys=False).decode()
    except Exception as exc:  # cbor2's errors, and the ValueError of its tag decoders
        raise _unreadable(what) from exc
    used = stream.tell()
    if not _plain_cbor(value) or (whole and used != len(data)):
        raise _unreadable(what)
    return value, used


def _envelope(response_json: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bool]:
    """The response object, its ``response`` object, the credential id and crossOrigin."""
    if not isinstance(response_json, str) or len(response_json) > MAX_RESPONSE_CHARS:
        raise _unreadable("too long, or not text")
    top = _json(response_json, "not a JSON object")
    if top.get("type") != "public-key":
        raise _unreadable("type")
    raw_id = top.get("rawId")
    credential_id = _b64(raw_id, "rawId")
    if top.get("id") != raw_id or not 1 <= len(credential_id) <= MAX_CREDENTIAL_ID_BYTES:
        raise _unreadable("id")
    if top.get("authenticatorAttachment") not in (None, "platform", "cross-platform"):
        raise _unreadable("authenticatorAttachment")
    if not isinstance(top.get("clientExtensionResults", {}), dict):
        raise _unreadable("clientExtensionResults")
    response = top.get("response")
    if not isinstance(response, dict):
        raise _unreadable("response")
    client_data = _json(_b64(response.get("clientDataJSON"), "clientDataJSON"), "clientDataJSON")
    for key in ("type", "challenge", "origin"):
        if not isinstance(client_data.get(key), str):
            raise _unreadable("clientDataJSON")
    _b64(client_data["challenge"], "clientDataJSON")
    cross_origin = client_data.get("crossOrigin", False)
    if not isinstance(cross_origin, bool):
        raise _unreadable("clientDataJSON")
    return top, response, credential_id, cross_origin


def _read_registration(response_json: str) -> Answer:
    top, response, credential_id, cross_origin = _envelope(response_json)
    encoded = response.get("attestationObject")
    attestation, _ = _cbor(_b64(encoded, "attestationObject"), "attestationObject")
    if (
        not isinstance(attestation, dict)
        or not isinstance(attestation.get("fmt"), str)
        or not isinstance(attestation.get("attStmt"), dict)
        or not isinstance(attestation.get("authData"), bytes)
    ):
        raise _unreadable("attestationObject")
    _check_auth_data(attestation["authData"], attested=True)
    transports = response.get("transports")
    transports = [] if transports is None else transports
    if not isinstance(transports, list) or not all(isinstance(t, str) for t in transports):
        raise _unreadable("transports")
    known = tuple(dict.fromkeys(t for t in transports if t in _TRANSPORTS))
    credential = {
        "id": top["id"],
        "rawId": top["rawId"],
        "type": "public-key",
        "response": {"clientDataJSON": response["clientDataJSON"], "attestationObject": encoded},
    }
    return Answer(credential, credential_id, None, cross_origin, known)


def _check_auth_data(auth_data: bytes, *, attested: bool) -> None:
    """Authenticator data as WebAuthn lays it out: rpIdHash, flags, signCount; when the AT
    flag is set (it must be at registration), the AAGUID, the credential id (1 to 1023
    bytes) and a COSE key; when the ED flag is set, an extensions map; and nothing after."""
    if len(auth_data) < _AUTH_DATA_MIN:
        raise _unreadable("authenticator data")
    flags = auth_data[32]
    at = _AUTH_DATA_MIN
    if attested and not flags & _FLAG_AT:
        raise _unreadable("authenticator data")
    if flags & _FLAG_AT:
        at += 16
        id_length = int.from_bytes(auth_data[at : at + 2], "big")
        at += 2 + id_length
        if not 1 <= id_length <= MAX_CREDENTIAL_ID_BYTES or len(auth_data) <= at:
            raise _unreadable("authenticator data")
        key, used = _cbor(auth_data[at:], "credential public key", whole=False)
        at += used
        if not isinstance(key, dict):
            raise _unreadable("credential public key")
    if flags & _FLAG_ED:
        extensions, used = _cbor(auth_data[at:], "extensions", whole=False)
        at += used
        if not isinstance(extensions, dict):
            raise _unreadable("extensions")
    if at != len(auth_data):
        raise _unreadable("authenticator data")


def read_assertion(response_json: str) -> Answer:
    """A ``navigator.credentials.get`` response (its ``toJSON()``) read strictly, once, for
    ``verify_authentication`` and the caller's look-ups (``credential_id``,
    ``user_handle``).

    Raises InvalidPasskey when it cannot be read (see the module's docstring).
    """
    top, response, credential_id, cross_origin = _envelope(response_json)
    _check_auth_data(_b64(response.get("authenticatorData"), "authenticatorData"), attested=False)
    if not _b64(response.get("signature"), "signature"):
        raise _unreadable("signature")
    handle = response.get("userHandle")
    user_handle = None if handle is None else _b64(handle, "userHandle") or None
    if user_handle is not None and len(user_handle) > MAX_USER_HANDLE_BYTES:
        raise _unreadable("userHandle")
    credential = {
        "id": top["id"],
        "rawId": top["rawId"],
        "type": "public-key",
        "response": {
            "clientDataJSON": response["clientDataJSON"],
            "authenticatorData": response["authenticatorData"],
            "signature": response["signature"],
        },
    }
    return Answer(credential, credential_id, user_handle, cross_origin, ())


# -- verifying -----------------------------------------------------------------------------


def _verified(verify: Any, read: Answer, **expected: Any) -> Any:
    """py_webauthn's ``verify`` of ``read``, its errors made ours, then the ``crossOrigin``
    refusal py_webauthn does not make."""
    try:
        verified = verify(credential=read.credential, **expected)
    except wa.WebAuthnException as exc:
        raise _refusal(exc) from exc
    except Exception as exc:  # what py_webauthn lets escape from input it cannot read
        raise InvalidPasskey("The passkey's answer could not be read.") from exc
    if read.cross_origin:
        raise PasskeyRefused(_REFUSED_MESSAGE, REASON_CROSS_ORIGIN)
    return verified


def _refusal(exc: wa.WebAuthnException) -> InvalidPasskey | PasskeyRefused:
    """Our error for one of py_webauthn's: InvalidPasskey for what it could not read, else
    PasskeyRefused with the reason its message (or class) names."""
    if isinstance(exc, _UNREADABLE_ERRORS):
        return _unreadable("WebAuthn")
    if isinstance(exc, wa.InvalidBackupFlags):
        return PasskeyRefused(_REFUSED_MESSAGE, REASON_BACKUP_FLAGS)
    if isinstance(exc, _PUBLIC_KEY_ERRORS):
        return PasskeyRefused(_REFUSED_MESSAGE, REASON_PUBLIC_KEY)
    message = str(exc)
    for start, reason in _MESSAGES:
        if message.startswith(start) and reason is None:
            return _unreadable("WebAuthn")
        if message.startswith(start):
            return PasskeyRefused(_REFUSED_MESSAGE, reason)
    if _FORMAT_SUFFIX.search(message) or "attestation statement" in message:
        return PasskeyRefused(_REFUSED_MESSAGE, REASON_ATTESTATION)
    return PasskeyRefused(_REFUSED_MESSAGE, REASON_OTHER)


def _usable_key(cose: bytes) -> bool:
    """Whether ``cose`` is a COSE key of one of the algorithms we accept, on its curve (or
    long enough), that the cryptography library loads."""
    if not cose or cose[0] == 0x04:  # py_webauthn's raw U2F form is not a COSE key
        return False
    try:
        decoded = decode_credential_public_key(cose)
        key = decoded_public_key_to_cryptography(decoded)
    except Exception:  # KeyError, TypeError, ValueError, py_webauthn's: not a usable key
        return False
    if isinstance(decoded, DecodedEC2PublicKey):
        es256 = decoded.alg == COSEAlgorithmIdentifier.ECDSA_SHA_256
        return es256 and decoded.crv == COSECRV.P256
    if isinstance(decoded, DecodedOKPPublicKey):  # py_webauthn loads Ed25519 only
        return isinstance(key, Ed25519PublicKey)
    if isinstance(decoded, DecodedRSAPublicKey):
        return (
            decoded.alg == COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256
            and isinstance(key, RSAPublicKey)
            and key.key_size >= _RSA_MIN_BITS
        )
    return False
