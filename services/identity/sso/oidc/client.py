"""Identity's calls to a tenant's OIDC provider: discovery, key set, token endpoint.

Only identity talks to IdPs (the gateway never does). Every URL is https (plain http only
to a loopback host, and only with ``oidc_allow_loopback_http``, for the in-process test
provider), is never followed through a redirect, and must resolve to public addresses only,
so a tenant's configuration cannot point identity at the platform's own network. Every
call is bounded by a timeout and every answer by a size.

Discovery documents and key sets are cached (``cache_seconds``) per URL, for every tenant
of the process alike. A token signed with a key the cached set lacks (the provider rolled
its keys over) refetches the set once — at most once per ``min_refetch_seconds`` per set —
and is refused if the key is still unknown. Signatures are verified with joserfc against
that set only, with the one algorithm the header names, which must be in
``rules.ALGORITHMS``: ``alg=none`` and HMAC tokens (an HS256 token keyed with the public
key) never verify. The token request is authlib's OAuth2 client (PKCE verifier, client
secret by ``client_secret_post`` where the provider offers it, else ``_basic``).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from ontrackio.identity.errors import IdpUnavailable, InvalidOidcConfig, OidcRefused
from ontrackio.identity.sso.oidc import rules

MAX_DOCUMENT_BYTES = 512 * 1024
SIGNING_KEY_TYPES = ("RSA", "EC")
# Why identity could not use the provider (IdpUnavailable.why, for the audit trail).
WHY_UNREACHABLE = "idp-unreachable"
WHY_BAD_ANSWER = "idp-answer-invalid"
WHY_ADDRESS = "idp-address-not-public"
WHY_DISCOVERY_ISSUER = "discovery-issuer-mismatch"

Resolver = Callable[..., list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Discovery:
    """What we use of a provider's discovery document."""

    issuer: str  # as the document says (Entra multi-tenant: with {tenantid})
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_method: str  # client_secret_post | client_secret_basic


@dataclass
class _Keys:
    keys: KeySet
    kids: frozenset[str]
    fetched_at: float


class ProviderClient:
    """One per process; thread-safe (the api serves calls from a thread pool)."""

    def __init__(
        self,
        *,
        timeout: float,
        cache_seconds: float,
        min_refetch_seconds: float,
        allow_loopback_http: bool,
        resolve: Resolver = socket.getaddrinfo,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.min_refetch_seconds = min_refetch_seconds
        self.allow_loopback_http = allow_loopback_http
        self._resolve = resolve
        self._clock = clock
        self._lock = threading.Lock()
        self._discovery: dict[str, tuple[float, Discovery]] = {}
        self._keys: dict[str, _Keys] = {}
        self.fetches: dict[str, int] = {}  # url -> times fetched (tests, metrics)

    # -- transport ----------------------------------------------------------------------------

    def check_destination(self, url: str, what: str) -> None:
        """Refuse (IdpUnavailable) a URL that is not https, or whose host resolves to an
        address that is not public (loopback only with allow_loopback_http)."""
        try:
            rules.check_url(url, what, allow_loopback_http=self.allow_loopback_http)
        except InvalidOidcConfig:
            raise IdpUnavailable(WHY_BAD_ANSWER) from None
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = self._resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise IdpUnavailable(WHY_UNREACHABLE) from None
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if ip.is_loopback and self.allow_loopback_http:
                continue
            mapped = getattr(ip, "ipv4_mapped", None)
            if not (mapped or ip).is_global:
                raise IdpUnavailable(WHY_ADDRESS)

    def _count(self, url: str) -> None:
        with self._lock:
            self.fetches[url] = self.fetches.get(url, 0) + 1

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        self.check_destination(url, what)
        self._count(url)
        try:
            with requests.get(
                url,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            ) as resp:
                if resp.status_code != 200:
                    raise IdpUnavailable(WHY_BAD_ANSWER)
                body = bytearray()
                for chunk in resp.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise IdpUnavailable(WHY_BAD_ANSWER)
        except requests.RequestException:
            raise IdpUnavailable(WHY_UNREACHABLE) from None
        try:
            value = json.loads(bytes(body))
        except ValueError:
            raise IdpUnavailable(WHY_BAD_ANSWER) from None
        if not isinstance(value, dict):
            raise IdpUnavailable(WHY_BAD_ANSWER)
        return value

    # -- discovery ----------------------------------------------------------------------------

    def discover(self, config: rules.ProviderConfig) -> Discovery:
        """The provider's discovery document (cached), checked: its issuer stands for the
        configured one (rules.check_discovered_issuer), its endpoints are https."""
        url = config.discovery_url
        now = self._clock()
        with self._lock:
            hit = self._discovery.get(url)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return self._checked(config, hit[1])
        doc = self._get_json(url, "discovery document")
        fields = {}
        for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(name)
            if not isinstance(value, str):
                raise IdpUnavailable(WHY_BAD_ANSWER)
            fields[name] = value
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            try:
                rules.check_url(fields[name], name, allow_loopback_http=self.allow_loopback_http)
            except InvalidOidcConfig:
                raise IdpUnavailable(WHY_BAD_ANSWER) from None
        methods = doc.get("token_endpoint_auth_methods_supported")
        offered = methods if isinstance(methods, list) else ["client_secret_basic"]
        auth = "client_secret_post" if "client_secret_post" in offered else "client_secret_basic"
        found = Discovery(token_auth_method=auth, **fields)
        with self._lock:
            self._discovery[url] = (now, found)
        return self._checked(config, found)

    @staticmethod
    def _checked(config: rules.ProviderConfig, found: Discovery) -> Discovery:
        try:
            rules.check_discovered_issuer(config, found.issuer)
        except InvalidOidcConfig:
            raise IdpUnavailable(WHY_DISCOVERY_ISSUER) from None
        return found

    def authorization_url(
        self,
        config: rules.ProviderConfig,
        discovery: Discovery,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_verifier: str,
    ) -> str:
        """The URL the browser is sent to: code flow, our state and nonce, PKCE (S256)."""
        extra: dict[str, str] = {"nonce": nonce}
        if config.provider == rules.GOOGLE:
            # A hint only (the hd claim is what we check): Google shows the domain's accounts.
            domains = config.hosted_domains
            extra["hd"] = domains[0] if len(domains) == 1 else "*"
        client = OAuth2Session(
            config.client_id,
            scope=" ".join(config.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        )
        try:
            url, _ = client.create_authorization_url(
                discovery.authorization_endpoint,
                state=state,
                code_verifier=code_verifier,
                **extra,
            )
        finally:
            client.close()
        return url

    # -- token --------------------------------------------------------------------------------

    def exchange_code(
        self,
        config: rules.ProviderConfig,
        discovery: Discovery,
        *,
        client_secret: str,
        code: str,
        code_verifier: str,
        redirect_uri: str,
    ) -> str:
        """The ID token the token endpoint gives for ``code`` (not yet verified).

        OidcRefused(WHY_TOKEN_REFUSED) when the provider refuses the code (used, expired,
        PKCE mismatch: an OAuth error answer), OidcRefused(WHY_NO_ID_TOKEN) when it gives
        no ID token; IdpUnavailable when it cannot be reached or answers nonsense."""
        self.check_destination(discovery.token_endpoint, "token_endpoint")
        self._count(discovery.token_endpoint)
        client = OAuth2Session(
            config.client_id,
            client_secret,
            token_endpoint_auth_method=discovery.token_auth_method,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        )
        try:
            token = client.fetch_token(
                discovery.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except OAuthError:
            raise OidcRefused(rules.WHY_TOKEN_REFUSED) from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if 400 <= status < 500:
                raise OidcRefused(rules.WHY_TOKEN_REFUSED) from None
            raise IdpUnavailable(WHY_BAD_ANSWER) from None
        except requests.RequestException:
            raise IdpUnavailable(WHY_UNREACHABLE) from None
        except ValueError:
            raise IdpUnavailable(WHY_BAD_ANSWER) from None
        finally:
            client.close()
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str) or not id_token:
            raise OidcRefused(rules.WHY_NO_ID_TOKEN)
        return id_token

    # -- signature ----------------------------------------------------------------------------

    def _fetch_keys(self, jwks_uri: str) -> _Keys:
        doc = self._get_json(jwks_uri, "jwks_uri")
        listed = doc.get("keys")
        if not isinstance(listed, list):
            raise IdpUnavailable(WHY_BAD_ANSWER)
        usable = [
            k
            for k in listed
            if isinstance(k, dict)
            and k.get("kty") in SIGNING_KEY_TYPES
            and k.get("use", "sig") == "sig"
        ]
        try:
            keys = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError):
            raise IdpUnavailable(WHY_BAD_ANSWER) from None
        kids = frozenset(k.kid for k in keys.keys if k.kid)
        found = _Keys(keys, kids, self._clock())
        with self._lock:
            self._keys[jwks_uri] = found
        return found

    def _key_set(self, jwks_uri: str, kid: str | None) -> KeySet:
        """The cached set, refreshed when stale, refetched once when it lacks ``kid``."""
        now = self._clock()
        with self._lock:
            cached = self._keys.get(jwks_uri)
        if cached is None or now - cached.fetched_at >= self.cache_seconds:
            cached = self._fetch_keys(jwks_uri)
        elif kid and kid not in cached.kids and now - cached.fetched_at >= self.min_refetch_seconds:
            cached = self._fetch_keys(jwks_uri)  # a key rollover at the provider
        if kid and kid not in cached.kids:
            raise OidcRefused(rules.WHY_UNKNOWN_KEY)
        return cached.keys

    def verify(self, discovery: Discovery, id_token: str) -> dict[str, Any]:
        """The claims of an ID token whose signature verifies with the provider's key set;
        OidcRefused naming why not (malformed, algorithm, unknown key, signature). The
        claims themselves are rules.check_claims's to judge."""
        if len(id_token) > rules.MAX_ID_TOKEN:
            raise OidcRefused(rules.WHY_TOKEN_MALFORMED)
        try:
            header = jws.extract_compact(id_token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError, TypeError):
            raise OidcRefused(rules.WHY_TOKEN_MALFORMED) from None
        alg = rules.check_header(header)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise OidcRefused(rules.WHY_TOKEN_MALFORMED)
        keys = self._key_set(discovery.jwks_uri, kid)
        try:
            token = jwt.decode(id_token, keys, algorithms=[alg])
        except BadSignatureError:
            raise OidcRefused(rules.WHY_SIGNATURE) from None
        except InvalidKeyIdError:
            raise OidcRefused(rules.WHY_UNKNOWN_KEY) from None
        except (JoseError, ValueError, TypeError):
            raise OidcRefused(rules.WHY_SIGNATURE) from None
        if not isinstance(token.claims, dict):
            raise OidcRefused(rules.WHY_TOKEN_MALFORMED)
        return dict(token.claims)
