"""An OIDC login from start to the ``ExternalIdentity`` it proves, for one tenant.

``start``: the provider's configuration (enabled, with a secret) → its discovery document
→ a pending login (state, nonce, PKCE verifier, browser binding, the redirect URI built
from the canonical origin) → the authorization URL.

``finish``: the callback's values checked (rules.parse_callback) → the pending login taken
(single use) and checked: not expired, begun in this browser (binding), for this provider
and origin → the provider's error, if it sent one → the code exchanged at the token
endpoint with the PKCE verifier and the client secret → the ID token's signature
(client.verify) → its claims (rules.check_claims). No database transaction is open while
the provider is called. Every refusal is audited (``signin.refused``, in a transaction of
its own) and raised: OidcRefused, or IdpUnavailable when the provider cannot be used.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ontrackio.core.directory import TenantInfo
from ontrackio.identity.errors import IdpUnavailable, OidcProviderNotFound, OidcRefused
from ontrackio.identity.signin import next_path, sso
from ontrackio.identity.signin.external import ExternalIdentity
from ontrackio.identity.signin.throttle_rules import address_key
from ontrackio.identity.sso import pending
from ontrackio.identity.sso.oidc import rules, store
from ontrackio.identity.sso.oidc.client import ProviderClient

WHY_STATE_EXPIRED = "state-expired"
WHY_PROVIDER_DISABLED = "provider-disabled"


@dataclass(frozen=True)
class Begun:
    authorization_url: str
    binding: str
    expires_in_seconds: int


@dataclass(frozen=True)
class CallbackValues:
    """The callback as the gateway forwards it (raw query values, the binding cookie)."""

    provider: str
    state: str
    code: str = ""
    error: str = ""
    error_description: str = ""
    iss: str = ""
    origin: str = ""
    binding: str = ""


class OidcSignIn:
    """OIDC for every tenant of one identity process (``rt``: its runtime)."""

    def __init__(self, rt: Any, client: ProviderClient | None = None) -> None:
        s = rt.settings
        self.rt = rt
        self.key = s.token_hash_key.get_secret_value().encode()
        self.allow_loopback_http = s.oidc_allow_loopback_http
        self.ttl = s.oidc_login_ttl_seconds
        self.budget = pending.Budget(
            s.sso_pending_logins_per_client, s.sso_pending_logins_per_tenant
        )
        self.client = client or ProviderClient(
            timeout=s.oidc_http_timeout_seconds,
            cache_seconds=s.oidc_metadata_cache_seconds,
            min_refetch_seconds=s.oidc_jwks_min_refetch_seconds,
            allow_loopback_http=s.oidc_allow_loopback_http,
        )

    def _uow(self, info: TenantInfo):
        return self.rt.dbs.unit_of_work(info)

    def _seal(self, info: TenantInfo) -> store.Seal:
        return lambda provider, value: self.rt.fields.encrypt_text(
            info, *store.SECRET_COLUMN, provider, value
        )

    def _unseal(self, info: TenantInfo) -> store.Unseal:
        return lambda provider, blob: self.rt.fields.decrypt_text(
            info, *store.SECRET_COLUMN, provider, blob
        )

    # -- configuration ----------------------------------------------------------------------

    def get_config(self, info: TenantInfo, provider: str) -> dict[str, Any]:
        with self._uow(info) as u:
            row = store.get_config(u, provider)
        if row is None:
            raise OidcProviderNotFound(f"no {provider} sign-in is configured")
        return row

    def set_config(
        self,
        info: TenantInfo,
        provider: str,
        *,
        client_secret: str,
        actor: str,
        **fields: Any,
    ) -> dict[str, Any]:
        config = rules.validate_config(
            provider, allow_loopback_http=self.allow_loopback_http, **fields
        )
        if client_secret:
            rules.validate_client_secret(client_secret)
            self.rt.fields.ready(info)  # keys before the transaction (envelope.py)
        with self._uow(info) as u:
            return store.set_config(
                u, config, client_secret=client_secret or None, seal=self._seal(info), actor=actor
            )

    def providers(self, info: TenantInfo) -> list[str]:
        with self._uow(info) as u:
            return store.list_enabled(u)

    # -- a login ------------------------------------------------------------------------------

    def _enabled_config(self, u, provider: str) -> rules.ProviderConfig | None:
        row = store.get_config(u, provider)
        if row is None or not row["enabled"] or not row["has_client_secret"]:
            return None
        return store.config_of(row)

    def start(
        self, info: TenantInfo, provider: str, next: str, origin: str, client_address: str = ""
    ) -> Begun:
        rules.validate_provider(provider)
        callback_uri = rules.redirect_uri(origin, provider)
        with self._uow(info) as u:
            config = self._enabled_config(u, provider)
        if config is None:
            raise OidcProviderNotFound(f"{provider} sign-in is not enabled for this tenant")
        discovery = self.client.discover(config)
        with self._uow(info) as u:
            begun = store.start_login(
                u,
                self.key,
                provider=provider,
                redirect_uri=callback_uri,
                next=next_path.safe_next(next),
                ttl_seconds=self.ttl,
                client_key=address_key(client_address),
                budget=self.budget,
            )
        url = self.client.authorization_url(
            config,
            discovery,
            redirect_uri=callback_uri,
            state=begun.state,
            nonce=begun.nonce,
            code_verifier=begun.code_verifier,
        )
        return Begun(url, begun.binding, self.ttl)

    def finish(
        self, info: TenantInfo, values: CallbackValues, *, now: Callable[[], float] = time.time
    ) -> tuple[ExternalIdentity, str]:
        """(the person, where to send them) or the audited refusal, raised."""
        seen: dict[str, str] = {}
        try:
            return self._finish(info, values, now, seen)
        except (OidcRefused, IdpUnavailable) as exc:
            detail = {k: v for k, v in seen.items() if k != "email"} or None
            with self._uow(info) as u:
                sso.record_refusal(
                    u,
                    f"oidc:{values.provider if values.provider in rules.PROVIDERS else 'unknown'}",
                    seen.get("email", ""),
                    exc.why,
                    detail,
                )
            raise

    def _finish(
        self, info: TenantInfo, values: CallbackValues, now: Callable[[], float], seen: dict
    ) -> tuple[ExternalIdentity, str]:
        provider = rules.validate_provider(values.provider)
        callback_uri = rules.redirect_uri(values.origin, provider)
        callback = rules.parse_callback(
            state=values.state,
            code=values.code,
            error=values.error,
            error_description=values.error_description,
            iss=values.iss,
        )
        self.rt.fields.ready(info)
        with self._uow(info) as u:
            pending = store.take_login(u, self.key, callback.state)
            config = self._enabled_config(u, provider)
            secret = store.client_secret(u, provider, self._unseal(info)) if config else None
        if pending is None:
            raise OidcRefused(rules.WHY_STATE_UNKNOWN)
        if pending.expires_at <= datetime.now(UTC):
            raise OidcRefused(WHY_STATE_EXPIRED)
        if not values.binding or not hmac.compare_digest(
            rules.binding_hash(self.key, values.binding), pending.binding_hash
        ):
            raise OidcRefused(rules.WHY_STATE_OTHER_BROWSER)
        if pending.provider != provider:
            raise OidcRefused(rules.WHY_STATE_OTHER_PROVIDER)
        if pending.redirect_uri != callback_uri:
            raise OidcRefused(rules.WHY_STATE_OTHER_ORIGIN)
        if callback.error:
            seen["error"] = callback.error
            if callback.error_description:
                seen["error_description"] = callback.error_description
            raise OidcRefused(rules.WHY_IDP_ERROR)
        if config is None or not secret:
            raise OidcRefused(WHY_PROVIDER_DISABLED)
        discovery = self.client.discover(config)
        if (
            callback.issuer
            and rules.TENANT_PLACEHOLDER not in discovery.issuer
            and callback.issuer != discovery.issuer
        ):
            raise OidcRefused(rules.WHY_RESPONSE_ISSUER)
        id_token = self.client.exchange_code(
            config,
            discovery,
            client_secret=secret,
            code=callback.code,
            code_verifier=pending.code_verifier,
            redirect_uri=pending.redirect_uri,
        )
        claims = self.client.verify(discovery, id_token)
        email = claims.get("email")
        if isinstance(email, str):
            seen["email"] = email
        expected = rules.Expected(
            provider=provider,
            issuer=discovery.issuer,
            client_id=config.client_id,
            nonce=pending.nonce,
            hosted_domains=config.hosted_domains,
            entra_tenant=config.entra_tenant,
        )
        ext = rules.check_claims(claims, expected, now=now())
        return ext, pending.next
