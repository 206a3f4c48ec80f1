"""A software WebAuthn authenticator for tests: no browser, no device.

``SoftAuthenticator`` holds one credential, ES256 (P-256) unless made EdDSA (Ed25519) or
RS256 (RSA 2048), and answers the options JSON that
``identity.mfa.passkeys`` gives the way a browser and a platform authenticator together
do, as ``PublicKeyCredential.toJSON()`` spells it (every binary value base64url without
padding): ``register`` a ``navigator.credentials.create`` response with attestation
``none`` (or ``packed`` self-attestation if asked; authData flags UP, UV unless told not,
BE and BS if so made, AT; AAGUID zeros; a random 32-byte credential id; the COSE key in
CBOR), ``authenticate`` a
``navigator.credentials.get`` response signed over authData and the hash of the client
data. The client data is ``{"type", "challenge", "origin", "crossOrigin"}``.

The signature counter goes up by one at each ``authenticate`` (a ``counts=False``
authenticator always says 0, as most synced passkeys do); ``sign_count`` may be set to
simulate a copy, and ``clone()`` is a second authenticator with the same key, credential id
and user handle. Keyword arguments let a test answer as a wrong or hostile client would
(another origin or RP id, no user verification, cross-origin, another COSE key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40
AAGUID = bytes(16)
ES256 = -7
EDDSA = -8
RS256 = -257
ALGORITHMS = {"ES256": ES256, "EdDSA": EDDSA, "RS256": RS256}


def b64url(data: bytes) -> str:
    """base64url without padding, as browsers spell binary values in JSON."""
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class NotAllowed(Exception):
    """What the browser would reject before any authenticator answers: an excluded
    credential at registration, a credential not in the allow list, another RP id."""


class SoftAuthenticator:
    """One discoverable credential and its signature counter (see the module's docstring)."""

    def __init__(
        self,
        *,
        algorithm: str = "ES256",
        counts: bool = True,
        backup_eligible: bool = False,
        backed_up: bool = False,
        attachment: str = "platform",
        transports: tuple[str, ...] = ("internal", "hybrid"),
    ) -> None:
        self.algorithm = algorithm
        self.alg = ALGORITHMS[algorithm]
        if algorithm == "ES256":
            self.key: Any = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "EdDSA":
            self.key = ed25519.Ed25519PrivateKey.generate()
        else:
            self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.credential_id = secrets.token_bytes(32)
        self.sign_count = 0
        self.counts = counts
        self.backup_eligible = backup_eligible
        self.backed_up = backed_up
        self.attachment = attachment
        self.transports = transports
        self.rp_id: str | None = None
        self.user_handle: bytes | None = None

    def clone(self) -> SoftAuthenticator:
        """Another authenticator with this one's key, credential, user and count."""
        twin = SoftAuthenticator(
            algorithm="EdDSA",  # a cheap key, replaced by this one's
            counts=self.counts,
            backup_eligible=self.backup_eligible,
            backed_up=self.backed_up,
            attachment=self.attachment,
            transports=self.transports,
        )
        twin.key, twin.algorithm, twin.alg = self.key, self.algorithm, self.alg
        twin.credential_id = self.credential_id
        twin.sign_count = self.sign_count
        twin.rp_id = self.rp_id
        twin.user_handle = self.user_handle
        return twin

    def cose_public_key(self) -> bytes:
        """The credential's public key as a COSE key (RFC 9053): EC2 (kty 2, alg -7, crv 1:
        P-256), OKP (kty 1, alg -8, crv 6: Ed25519) or RSA (kty 3, alg -257)."""
        public = self.key.public_key()
        if self.algorithm == "EdDSA":
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return cbor2.dumps({1: 1, 3: EDDSA, -1: 6, -2: raw})
        numbers = public.public_numbers()
        if self.algorithm == "RS256":
            n, e = numbers.n, numbers.e
            return cbor2.dumps(
                {1: 3, 3: RS256, -1: n.to_bytes(256, "big"), -2: e.to_bytes(3, "big")}
            )
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: x, -3: y})

    def sign(self, data: bytes) -> bytes:
        """``data`` signed as the credential's algorithm does (ECDSA: DER, as WebAuthn has
        it)."""
        if self.algorithm == "EdDSA":
            return self.key.sign(data)
        if self.algorithm == "RS256":
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def _flags(self, uv: bool) -> int:
        flags = FLAG_UP | (FLAG_UV if uv else 0)
        flags |= FLAG_BE if self.backup_eligible else 0
        return flags | (FLAG_BS if self.backed_up else 0)

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str, cross_origin: bool) -> bytes:
        data = {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": cross_origin}
        return json.dumps(data, separators=(",", ":")).encode("utf-8")

    def _credential(self, response: dict[str, Any]) -> str:
        return json.dumps(
            {
                "id": b64url(self.credential_id),
                "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": response,
                "clientExtensionResults": {},
                "authenticatorAttachment": self.attachment,
            }
        )

    def register(
        self,
        options_json: str,
        *,
        origin: str,
        uv: bool = True,
        rp_id: str | None = None,
        cross_origin: bool = False,
        cose_key: bytes | None = None,
        attestation: str = "none",
    ) -> str:
        """The JSON a browser posts after ``navigator.credentials.create(options)``.

        ``rp_id`` signs for another RP id than the options'; ``cose_key`` puts another public
        key in the authenticator data; ``attestation="packed"`` is a self-attestation (signed
        with the credential's own key). Raises NotAllowed when this credential is excluded.
        """
        options = json.loads(options_json)
        excluded = {d["id"] for d in options.get("excludeCredentials") or []}
        if b64url(self.credential_id) in excluded:
            raise NotAllowed("InvalidStateError: the authenticator is already registered")
        self.rp_id = options["rp"]["id"]
        self.user_handle = unb64url(options["user"]["id"])
        client_data = self._client_data(
            "webauthn.create", options["challenge"], origin, cross_origin
        )
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode("utf-8")).digest()
            + bytes([self._flags(uv) | FLAG_AT])
            + self.sign_count.to_bytes(4, "big")
            + AAGUID
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + (self.cose_public_key() if cose_key is None else cose_key)
        )
        statement: dict[str, Any] = {}
        if attestation == "packed":
            signature = self.sign(auth_data + hashlib.sha256(client_data).digest())
            statement = {"alg": self.alg, "sig": signature}
        attestation_object = cbor2.dumps(
            {"fmt": attestation, "attStmt": statement, "authData": auth_data}
        )
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return self._credential(
            {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "authenticatorData": b64url(auth_data),
                "transports": list(self.transports),
                "publicKeyAlgorithm": self.alg,
                "publicKey": b64url(spki),
            }
        )

    def authenticate(
        self,
        options_json: str,
        *,
        origin: str,
        uv: bool = True,
        rp_id: str | None = None,
        user_handle: bool = True,
        cross_origin: bool = False,
    ) -> str:
        """The JSON a browser posts after ``navigator.credentials.get(options)``, with the
        counter one up (unless this authenticator does not count).

        ``rp_id`` signs for another RP id than the one registered; ``user_handle=False``
        sends a null user handle. Raises NotAllowed when an allow list leaves this
        credential out, or the options are for another RP id than the registration's.
        """
        options = json.loads(options_json)
        allowed = {d["id"] for d in options.get("allowCredentials") or []}
        if allowed and b64url(self.credential_id) not in allowed:
            raise NotAllowed("NotAllowedError: no credential in the allow list")
        if options.get("rpId") != self.rp_id:
            raise NotAllowed("NotAllowedError: no credential for this RP id")
        if self.counts:
            self.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"], origin, cross_origin)
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode("utf-8")).digest()
            + bytes([self._flags(uv)])
            + self.sign_count.to_bytes(4, "big")
        )
        signature = self.sign(auth_data + hashlib.sha256(client_data).digest())
        handle = b64url(self.user_handle) if user_handle and self.user_handle else None
        return self._credential(
            {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": handle,
            }
        )
