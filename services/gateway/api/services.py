"""The Gateway's services as handlers receive them: the upstream stubs and the caches a
handler must update after a change it made (a revoked token, a new allowlist)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ontrackio.gateway.allowlists import Allowlists
from ontrackio.gateway.api.operation import Call
from ontrackio.gateway.auth.bearer import Authenticator
from ontrackio.gateway.auth.session import SessionChecker, grant_response
from ontrackio.gateway.upstream import Upstream


@dataclass(frozen=True)
class Services:
    upstream: Upstream
    tokens: Authenticator
    allowlists: Allowlists
    sessions: SessionChecker | None = None
    # The sign-in pages build links and cookies from these (canonical origin, TLS, keys).
    settings: Any = None  # GatewaySettings
    core: Any = None  # core config.Settings

    @property
    def csrf_key(self) -> bytes:
        """The key session CSRF tokens are derived under (sessions/rules.py)."""
        return self.core.token_hash_key.get_secret_value().encode()

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies get ``Secure`` (GatewaySettings.secure_cookies)."""
        return bool(self.settings.secure_cookies)

    def canonical_origin(self, slug: str) -> str:
        """The tenant's public origin from the settings (never from the request's headers)."""
        return self.settings.canonical_origin(slug)

    def grant_response(self, grant: Any) -> Any:
        """The browser's answer to a successful sign-in: the session cookie and 303 to
        ``grant.next`` (``Secure`` when the tenant is served over https)."""
        return grant_response(grant, secure=self.secure_cookies)

    async def rpc(self, call: Call, method: Any, request: Any) -> Any:
        """``method(request)`` for the call's tenant and actor, naming where it came from (the
        client address and request id, for the audit trail); raises grpc.aio.AioRpcError."""
        return await self.upstream.call(
            method,
            request,
            tenant=call.tenant,
            actor=call.actor,
            client_address=str(call.client_ip) if call.client_ip is not None else None,
            request_id=call.request_id,
        )
