"""uvicorn arguments for the gateway process, with the choices the edge's security depends on."""

from __future__ import annotations

from typing import Any

from ontrackio.gateway.settings import GatewaySettings
from ontrackio.gateway.tls import uvicorn_ssl_kwargs


def uvicorn_kwargs(settings: GatewaySettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run(app_or_factory, **uvicorn_kwargs(settings))``."""
    password = settings.tls_key_password.get_secret_value() if settings.tls_key_password else None
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        # The edge decides which X-Forwarded-For to believe (client_ip.py); uvicorn rewriting
        # scope["client"] first would let it trust 127.0.0.1 by default.
        "proxy_headers": False,
        "forwarded_allow_ips": "",
        # h11 passes an absolute-form target through in raw_path, so hosts.py can refuse one that
        # disagrees with Host; httptools silently drops the authority.
        "http": "h11",
        "server_header": False,
        **uvicorn_ssl_kwargs(settings.tls_cert_file, settings.tls_key_file, password),
    }
