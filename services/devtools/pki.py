"""The development PKI: a CA per deployment and one certificate per identity, for `make run`
and the test harness (production brings its own, see docs/architecture.md).

Layout of the directory (never committed; under the run directory):
``ca.pem`` (trusted by every process), ``ca-key.pem``, and ``<name>.pem`` /
``<name>-key.pem`` per identity. Certificates are ECDSA P-256 (cheap handshakes), carry the
identity as URI SAN ``spiffe://ontrackio/<deployment>/<name>`` (core/trust.py) and the
DNS name ``<name>``, which clients verify as the server's name whatever address they dial.
Keys are written readable by their owner only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ontrackio.core.trust import IDENTITIES, spiffe_id

VALIDITY = dt.timedelta(days=30)


@dataclass(frozen=True)
class Authority:
    """A CA able to issue certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def new_authority(common_name: str) -> Authority:
    """A fresh self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def issue(
    ca: Authority, deployment: str, name: str, uris: list[str] | None = None
) -> tuple[bytes, bytes]:
    """A (certificate PEM, key PEM) for `name`, usable as server and as client.

    `uris` replaces the URI SANs (tests forge odd certificates with it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(u)
        for u in (uris if uris is not None else [spiffe_id(deployment, name)])
    ]
    sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _load_authority(directory: Path) -> Authority | None:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (directory / "ca-key.pem").read_bytes(), password=None
        )
    except (OSError, ValueError):
        return None
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=1):
        return None
    return Authority(cert, key)  # type: ignore[arg-type]


def ensure(directory: Path, deployment: str) -> Path:
    """The development PKI of `deployment` in `directory`: kept if present and valid for
    at least another day, else made anew (a new CA and every identity's certificate)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _load_authority(directory)
    complete = ca is not None and all(
        (directory / f"{n}.pem").exists() and (directory / f"{n}-key.pem").exists()
        for n in IDENTITIES
    )
    if complete and _issued_for(directory, deployment):
        return directory
    ca = new_authority(f"OnTrackio development CA ({deployment})")
    for name in sorted(IDENTITIES):
        cert, key = issue(ca, deployment, name)
        _write(directory / f"{name}-key.pem", key, private=True)
        _write(directory / f"{name}.pem", cert)
    _write(directory / "ca-key.pem", _key_pem(ca.key), private=True)
    _write(directory / "ca.pem", ca.pem)
    return directory


def _issued_for(directory: Path, deployment: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate((directory / "operator.pem").read_bytes())
        uris = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return uris == [spiffe_id(deployment, "operator")]


def env(directory: Path) -> dict[str, str]:
    """The ONTRACK_TLS_* settings pointing every process at its own certificate here."""
    return {
        "ONTRACK_TLS_CA_FILE": str(directory / "ca.pem"),
        "ONTRACK_TLS_CERT_FILE": str(directory / "{identity}.pem"),
        "ONTRACK_TLS_KEY_FILE": str(directory / "{identity}-key.pem"),
    }
