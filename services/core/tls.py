"""Mutual TLS credentials of a process: its own certificate and the deployment's CA.

Servers require a client certificate of that CA (core/grpcserver.py maps it to a caller
identity); clients present their own and verify the server's certificate against the DNS
name of the service they mean (``<service>``, channel option
``grpc.ssl_target_name_override``), whatever address they dial, so that no other holder
of a certificate of the CA can pose as that service.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from ontrackio.core.config import ConfigError, Settings


@dataclass(frozen=True)
class Material:
    """PEM bytes of a CA bundle, a certificate and its key."""

    ca: bytes
    cert: bytes
    key: bytes


def load(settings: Settings, identity: str) -> Material:
    """The TLS files of `identity`; raises ConfigError naming the unreadable setting."""
    names = ("ONTRACK_TLS_CA_FILE", "ONTRACK_TLS_CERT_FILE", "ONTRACK_TLS_KEY_FILE")
    data = []
    for name, path in zip(names, settings.tls_paths(identity), strict=True):
        data.append(_read(name, path))
    return Material(*data)


def _read(setting: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{setting}: {path} is not PEM")
    return data


def server_credentials(material: Material) -> grpc.ServerCredentials:
    """Credentials of a server that requires every client to present a certificate of the CA."""
    return grpc.ssl_server_credentials(
        [(material.key, material.cert)], root_certificates=material.ca, require_client_auth=True
    )


def channel_credentials(material: Material) -> grpc.ChannelCredentials:
    """Credentials of a client presenting its own certificate and trusting the CA only."""
    return grpc.ssl_channel_credentials(material.ca, material.key, material.cert)


def server_name_options(service: str) -> list[tuple[str, str]]:
    """Channel options making the client verify that the server is `service`."""
    return [("grpc.ssl_target_name_override", service)]
