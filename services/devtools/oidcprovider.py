"""A real OpenID Connect provider on loopback, for the tests: authlib's authorization server.

Authorization code grant with PKCE (S256 required) and the OpenID Connect extension (nonce
required), client authentication by secret (basic or post), an OpenID Connect discovery
document, a JWKS and ID tokens signed with RS256 — served by werkzeug's HTTP server in a
thread of the test process, on 127.0.0.1. One provider plays three shapes at once, each
with its own issuer and discovery document (the endpoints are shared):

- ``generic``: issuer ``<base>/generic``;
- ``google``: issuer ``<base>/google``, tokens shaped as Google's (a string ``aud``, ``azp``,
  ``hd``, ``email_verified``);
- ``entra``: the multi-tenant endpoint ``<base>/organizations/v2.0`` whose document names
  the issuer ``<base>/{tenantid}/v2.0``, and each directory's own ``<base>/<tid>/v2.0``;
  tokens carry ``tid``, ``oid``, ``preferred_username``, ``xms_edov`` and the issuer of
  their ``tid``; ``sub`` is pairwise (differs from ``oid``), as Entra's is.

A client is registered with its shape (``register``). Who signs in is what the test says
(``sign_in_as``: the next authorization request of that client is approved as that person,
no login page); ``None`` makes the provider answer ``error=access_denied``. ``misbehave``
sets knobs on a client's next ID tokens: wrong ``iss``/``aud``/``tid``/``hd``, ``alg=none``,
HS256 keyed with the public key, expired, the nonce of an earlier login, a key not in the
JWKS, claims added or dropped. ``rotate_keys`` rolls the signing key over (the old key
kept in the JWKS or not). Counters (``jwks_fetches``, ``token_requests``) let tests see what
a client asked for.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

HOST = "127.0.0.1"
SHAPES = ("generic", "google", "entra")
ENTRA_MULTI_TENANT = "organizations"
SCOPES = ("openid", "email", "profile")
ID_TOKEN_SECONDS = 300


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # the tests' output is not an access log
        pass


@dataclass(frozen=True)
class Person:
    """Who the provider says signed in. ``claims``: extra claims as the shape would send
    them (``hd`` for Google; ``tid``, ``oid``, ``preferred_username`` for Entra; ``amr``,
    ``acr``); ``email_verified`` None leaves the claim out."""

    sub: str
    email: str
    name: str = ""
    email_verified: bool | None = True
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Misbehaviour:
    """Knobs for a client's ID tokens; the defaults behave."""

    iss: str | None = None  # the token's iss
    aud: str | list[str] | None = None
    tid: str | None = None  # Entra: another directory (its tid and the iss of that tid)
    hd: str | None = None
    alg: str | None = None  # "none" | "HS256-public-key"
    expired: bool = False
    reuse_nonce: bool = False  # the nonce of the client's previous authorization
    unknown_key: bool = False  # signed by a key the JWKS does not hold
    add: dict[str, Any] = field(default_factory=dict)
    drop: tuple[str, ...] = ()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class _Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    shape: str

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class _Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    person: Person
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class OidcProvider:
    """The provider; ``with OidcProvider() as p:`` serves it until the block ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clients: dict[str, _Client] = {}
        self.codes: dict[str, _Code] = {}
        self.people: dict[str, Person | None] = {}
        self.knobs: dict[str, Misbehaviour] = {}
        self.nonces: dict[str, list[str]] = {}  # client -> nonces of its authorizations
        self.keys: list[RSAKey] = [self._new_key()]
        self.jwks_fetches = 0
        self.token_requests = 0
        self.authorizations = 0
        self.app = self._build_app()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> OidcProvider:
        self._server = make_server(HOST, 0, self.app, threaded=True, request_handler=_QuietHandler)
        self.base_url = f"http://{HOST}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oidc-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what a test drives -------------------------------------------------------------------

    def issuer(self, shape: str, entra_tenant: str = ENTRA_MULTI_TENANT) -> str:
        """The issuer a tenant configures for ``shape`` (Entra: the multi-tenant endpoint,
        or a directory's own when ``entra_tenant`` names one)."""
        if shape == "entra":
            return f"{self.base_url}/{entra_tenant}/v2.0"
        return f"{self.base_url}/{shape}"

    def register(self, shape: str, redirect_uri: str) -> tuple[str, str]:
        """A new client of ``shape``: (client id, secret)."""
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}")
        client_id = f"client-{uuid.uuid4().hex[:12]}"
        secret = secrets.token_urlsafe(24)
        with self._lock:
            self.clients[client_id] = _Client(client_id, secret, [redirect_uri], shape)
        return client_id, secret

    def sign_in_as(self, client_id: str, person: Person | None) -> None:
        """The client's next authorization requests are approved as ``person`` (None:
        answered with error=access_denied)."""
        with self._lock:
            self.people[client_id] = person

    def misbehave(self, client_id: str, knobs: Misbehaviour | None = None, **changes) -> None:
        with self._lock:
            base = knobs or self.knobs.get(client_id, Misbehaviour())
            self.knobs[client_id] = replace(base, **changes)

    def behave(self, client_id: str) -> None:
        with self._lock:
            self.knobs.pop(client_id, None)

    def rotate_keys(self, keep_old: bool = True) -> str:
        """A new signing key (first in the JWKS); the old one stays published or not."""
        key = self._new_key()
        with self._lock:
            self.keys = [key, *self.keys] if keep_old else [key]
        return key.kid or ""

    @staticmethod
    def _new_key() -> RSAKey:
        kid = uuid.uuid4().hex[:16]
        return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})

    # -- ID tokens ----------------------------------------------------------------------------

    def _claims(self, client: _Client, code: _Code, person: Person, knobs: Misbehaviour):
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": client.client_id if client.shape == "google" else [client.client_id],
            "iat": now,
            "exp": now + ID_TOKEN_SECONDS,
            "auth_time": code.auth_time,
            "sub": person.sub,
        }
        if person.name:
            claims["name"] = person.name
        if "email" in code.scope.split():
            claims["email"] = person.email
            if person.email_verified is not None:
                claims["email_verified"] = person.email_verified
        claims.update(person.claims)
        if client.shape == "google":
            claims["azp"] = client.client_id
            claims["iss"] = self.issuer("google")
        elif client.shape == "entra":
            claims.setdefault("ver", "2.0")
            if knobs.tid is not None:
                claims["tid"] = knobs.tid
            claims["iss"] = f"{self.base_url}/{claims.get('tid', '')}/v2.0"
        else:
            claims["iss"] = self.issuer("generic")
        nonce = code.nonce
        if knobs.reuse_nonce:
            earlier = self.nonces.get(client.client_id, [])
            nonce = earlier[-2] if len(earlier) > 1 else "never-issued"
        if nonce:
            claims["nonce"] = nonce
        if knobs.iss is not None:
            claims["iss"] = knobs.iss
        if knobs.aud is not None:
            claims["aud"] = knobs.aud
        if knobs.hd is not None:
            claims["hd"] = knobs.hd
        if knobs.expired:
            claims["iat"], claims["exp"] = now - 3600, now - 600
        claims.update(knobs.add)
        for name in knobs.drop:
            claims.pop(name, None)
        return claims

    def sign(self, claims: dict[str, Any], knobs: Misbehaviour = Misbehaviour()) -> str:
        key = self.keys[0]
        if knobs.alg == "none":
            head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{head}.{b64url(json.dumps(claims).encode())}."
        if knobs.alg == "HS256-public-key":
            # The classic confusion: HMAC keyed with the public key a verifier holds.
            import hashlib
            import hmac

            header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
            signing_input = (
                f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
            )
            secret = key.as_pem(private=False)
            mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            return f"{signing_input}.{b64url(mac)}"
        if knobs.unknown_key:
            key = self._new_key()
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.as_dict(private=False) for k in self.keys]}

    # -- the web application ------------------------------------------------------------------

    def _build_app(self) -> Flask:
        app = Flask("oidc-provider")
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                nonce = req.payload.data.get("nonce")
                with provider._lock:
                    provider.codes[code] = _Code(
                        code=code,
                        client_id=req.client.client_id,
                        redirect_uri=req.payload.redirect_uri,
                        scope=req.scope,
                        person=req.user,
                        nonce=nonce,
                        code_challenge=req.payload.data.get("code_challenge"),
                        code_challenge_method=req.payload.data.get("code_challenge_method"),
                        auth_time=int(time.time()),
                    )
                    if nonce:
                        provider.nonces.setdefault(req.client.client_id, []).append(nonce)

            def query_authorization_code(self, code, client):
                with provider._lock:
                    item = provider.codes.get(code)
                return item if item is not None and item.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code):
                with provider._lock:
                    provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.person

        class OpenID(OpenIDCode):
            def exists_nonce(self, nonce, req):
                with provider._lock:
                    return nonce in provider.nonces.get(req.payload.client_id, [])

            def resolve_client_private_key(self, client):
                return provider.keys[0]

            def get_client_claims(self, client):
                return {}

            def generate_user_info(self, user, scope):
                return UserInfo(sub=user.sub)

            def encode_id_token(self, token, req):
                client = req.client
                with provider._lock:
                    knobs = provider.knobs.get(client.client_id, Misbehaviour())
                claims = provider._claims(client, req.authorization_code, req.user, knobs)
                return provider.sign(claims, knobs)

        def query_client(client_id):
            with provider._lock:
                return provider.clients.get(client_id)

        server = AuthorizationServer(app, query_client=query_client, save_token=lambda t, r: None)
        server.register_grant(CodeGrant, [OpenID(require_nonce=True), CodeChallenge(required=True)])

        def document(issuer: str) -> dict[str, Any]:
            base = provider.base_url
            return {
                "issuer": issuer,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public", "pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": list(SCOPES),
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email"],
            }

        @app.get("/<shape>/.well-known/openid-configuration")
        def discovery(shape):
            if shape not in ("generic", "google"):
                return jsonify(error="not_found"), 404
            return jsonify(document(provider.issuer(shape)))

        @app.get("/<directory>/v2.0/.well-known/openid-configuration")
        def entra_discovery(directory):
            if directory in (ENTRA_MULTI_TENANT, "common"):
                return jsonify(document(f"{provider.base_url}/{{tenantid}}/v2.0"))
            return jsonify(document(f"{provider.base_url}/{directory}/v2.0"))

        @app.get("/jwks")
        def jwks():
            with provider._lock:
                provider.jwks_fetches += 1
            return jsonify(provider.jwks())

        @app.get("/authorize")
        def authorize():
            client_id = request.args.get("client_id", "")
            with provider._lock:
                provider.authorizations += 1
                person = provider.people.get(client_id)
            try:
                grant = server.get_consent_grant(end_user=person)
            except OAuth2Error as error:  # no valid client or redirect URI: never redirected
                return jsonify(error=error.error, error_description=error.description), 400
            return server.create_authorization_response(grant_user=person, grant=grant)

        @app.post("/token")
        def token():
            with provider._lock:
                provider.token_requests += 1
            return server.create_token_response()

        return app
