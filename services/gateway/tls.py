"""TLS for the gateway.

An SSLContext with TLS 1.2 as the floor, and the matching uvicorn arguments.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Forward-secret AEAD suites only for TLS 1.2; TLS 1.3 suites are fixed by OpenSSL and preferred.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    """Raise ``context`` to TLS 1.2 minimum with modern TLS 1.2 ciphers; returns the same object."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def server_ssl_context(
    cert_file: str | Path, key_file: str | Path, password: str | None = None
) -> ssl.SSLContext:
    """A server context for ``cert_file``/``key_file`` (PEM).

    Raises ssl.SSLError / OSError if unusable.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file), password)
    return harden(context)


def uvicorn_ssl_context_factory(
    config: Any, default_factory: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """uvicorn ``ssl_context_factory``: its own context (cert, key, password), hardened.

    Module-level so it pickles into uvicorn's worker processes.
    """
    return harden(default_factory())


def uvicorn_ssl_kwargs(
    cert_file: str | Path | None, key_file: str | Path | None, password: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config``.

    Empty when TLS is not configured.
    """
    if not cert_file or not key_file:
        return {}
    kwargs: dict[str, Any] = {
        "ssl_certfile": str(cert_file),
        "ssl_keyfile": str(key_file),
        "ssl_context_factory": uvicorn_ssl_context_factory,
    }
    if password:
        kwargs["ssl_keyfile_password"] = password
    return kwargs
