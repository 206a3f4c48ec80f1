"""OIDC rules: provider configurations, the edge's callback values and ID-token claims.

Pure: no I/O. ``check_claims`` is the whole of what we believe of an ID token once its
signature has been verified (client.py): issuer, audience (and ``azp`` when there are
several), expiry, issue and not-before times with a small leeway, the nonce of the login
it answers, and per provider — Entra: the issuer is the tenant-specific one of the token's
own ``tid``, which must be the tenant's configured directory; Google: ``hd`` must be one of
the configured Workspace domains. ``email_verified=false`` is refused outright. The account
key is the issuer plus ``sub`` (Entra: ``tid:oid``, stable across the directory's apps),
never the email.

Every refusal is an ``OidcRefused`` whose ``why`` (one of the ``WHY_*`` constants) goes to
the audit trail; the person signing in sees one generic answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ontrackio.identity.errors import InvalidOidcConfig, OidcRefused
from ontrackio.identity.signin.external import OIDC_PREFIX, ExternalIdentity

GOOGLE, ENTRA, GENERIC = "google", "entra", "oidc"
PROVIDERS = (GOOGLE, ENTRA, GENERIC)
GOOGLE_ISSUER = "https://accounts.google.com"
# Google documents both spellings of its issuer in ID tokens.
GOOGLE_ISSUER_ALIASES = ("https://accounts.google.com", "accounts.google.com")
ENTRA_AUTHORITY = "https://login.microsoftonline.com"
# Entra's multi-tenant discovery documents (common, organizations) spell the issuer with
# this placeholder; the token's own tid fills it.
TENANT_PLACEHOLDER = "{tenantid}"
DISCOVERY_PATH = "/.well-known/openid-configuration"

# Asymmetric signatures only: "none" and every HMAC algorithm are refused, so an HS256
# token "signed" with the provider's public key as the secret never verifies.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY_SECONDS = 60
DEFAULT_SCOPES = ("openid", "email", "profile")
MAX_SCOPES = 20
MAX_DOMAINS = 50
MAX_URL = 2048
MAX_CLIENT_ID = 256
MAX_CLIENT_SECRET = 1024
MAX_CODE = 4096
MAX_ERROR_DESCRIPTION = 300
MAX_ID_TOKEN = 16 * 1024
MAX_DISPLAY_NAME = 200
MAX_EMAIL = 320

# Why a callback was refused (the audit trail's ``why``; never shown to the person).
WHY_IDP_ERROR = "idp-error"  # the provider answered the authorization request with an error
WHY_STATE_MALFORMED = "state-malformed"
WHY_STATE_UNKNOWN = "state-unknown"  # never issued here, already used, or expired
WHY_STATE_OTHER_BROWSER = "state-other-browser"  # the login began in another browser
WHY_STATE_OTHER_PROVIDER = "state-other-provider"
WHY_STATE_OTHER_ORIGIN = "state-other-origin"
WHY_CODE_MALFORMED = "code-malformed"
WHY_RESPONSE_ISSUER = "authorization-response-issuer-mismatch"  # RFC 9207 ``iss``
WHY_TOKEN_REFUSED = "token-request-refused"  # the token endpoint said no (invalid_grant, …)
WHY_NO_ID_TOKEN = "no-id-token"
WHY_TOKEN_MALFORMED = "id-token-malformed"
WHY_ALGORITHM = "algorithm-not-allowed"
WHY_UNKNOWN_KEY = "signing-key-unknown"
WHY_SIGNATURE = "signature-invalid"
WHY_ISSUER = "issuer-mismatch"
WHY_AUDIENCE = "audience-mismatch"
WHY_AZP = "authorized-party-mismatch"
WHY_EXPIRED = "expired"
WHY_NOT_YET_VALID = "not-yet-valid"
WHY_ISSUED_IN_FUTURE = "issued-in-future"
WHY_NONCE = "nonce-mismatch"
WHY_TENANT = "entra-tenant-mismatch"
WHY_HOSTED_DOMAIN = "hosted-domain-mismatch"
WHY_EMAIL_UNVERIFIED = "email-unverified"
WHY_EMAIL_MISSING = "email-missing"
WHY_SUBJECT = "subject-missing"
WHY_CLAIM_TYPE = "claim-malformed"

_GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# RFC 6749 A.4: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}\Z")
# RFC 6749 A.7/A.11: error = 1*NQSCHAR, code and state = 1*VSCHAR (we issue states ourselves).
_ERROR_RE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}\Z")
_VSCHAR_RE = re.compile(r"[\x20-\x7e]+\Z")
# Our states: secrets.token_urlsafe(32).
STATE_BYTES = 32
_STATE_RE = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_CLIENT_ID_RE = re.compile(r"[\x21-\x7e]{1,256}\Z")
_LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_ORIGIN_RE = re.compile(r"https?://[a-z0-9.-]+(:[0-9]{1,5})?\Z")


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderConfig:
    """One tenant's configuration of one provider, validated (the secret is apart: store.py).

    ``issuer``: the issuer we discover from (``issuer + DISCOVERY_PATH``) and, except for
    Entra's multi-tenant endpoints, the one ID tokens must name; ``hosted_domains``: Google
    Workspace domains whose accounts may sign in (``hd``); ``entra_tenant``: the Entra
    directory (tenant id) whose users may sign in.
    """

    provider: str
    issuer: str
    client_id: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    hosted_domains: tuple[str, ...] = ()
    entra_tenant: str = ""
    enabled: bool = True

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + DISCOVERY_PATH


def validate_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise InvalidOidcConfig(f"provider must be one of {', '.join(PROVIDERS)}")
    return provider


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str, *, allow_loopback_http: bool) -> str:
    """``url`` if it is an absolute https URL with a host, no user information and no
    fragment (http only to a loopback host, and only when ``allow_loopback_http``: tests);
    else InvalidOidcConfig naming ``what``."""
    if not url or len(url) > MAX_URL or not _VSCHAR_RE.match(url) or " " in url:
        raise InvalidOidcConfig(f"{what} must be an https URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise InvalidOidcConfig(f"{what} is not a valid URL") from None
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise InvalidOidcConfig(f"{what} must name a host, with no user information or fragment")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and allow_loopback_http and is_loopback_host(host):
        return url
    raise InvalidOidcConfig(f"{what} must be an https URL")


def _domain(text: str) -> str:
    d = text.strip().rstrip(".").lower()
    labels = d.split(".")
    if len(d) > 253 or len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        raise InvalidOidcConfig(f"not a domain name: {printable_excerpt(text, 60)!r}")
    return d


def validate_config(
    provider: str,
    *,
    issuer: str = "",
    client_id: str,
    scopes: Iterable[str] = (),
    hosted_domains: Iterable[str] = (),
    entra_tenant: str = "",
    enabled: bool = True,
    allow_loopback_http: bool = False,
) -> ProviderConfig:
    """The validated configuration; InvalidOidcConfig names the first bad field.

    Defaults: Google's issuer is Google's; Entra's is the tenant-specific v2.0 issuer of
    ``entra_tenant``; a generic provider must name its issuer. Google needs at least one
    Workspace domain and Entra its directory id, so that nobody outside them signs in.
    Scopes always include ``openid``.
    """
    provider = validate_provider(provider)
    client_id = (client_id or "").strip()
    if not _CLIENT_ID_RE.match(client_id):
        raise InvalidOidcConfig(
            f"client_id must be 1 to {MAX_CLIENT_ID} printable characters, no spaces"
        )
    tenant = (entra_tenant or "").strip().lower()
    if provider == ENTRA:
        if not _GUID_RE.match(tenant):
            raise InvalidOidcConfig("entra_tenant must be the directory (tenant) id, a GUID")
    elif tenant:
        raise InvalidOidcConfig("entra_tenant applies to the entra provider only")
    domains = tuple(dict.fromkeys(_domain(d) for d in hosted_domains))
    if len(domains) > MAX_DOMAINS:
        raise InvalidOidcConfig(f"at most {MAX_DOMAINS} hosted domains")
    if provider == GOOGLE and not domains:
        raise InvalidOidcConfig("hosted_domains must name the Google Workspace domain(s)")
    if provider != GOOGLE and domains:
        raise InvalidOidcConfig("hosted_domains applies to the google provider only")
    issuer = (issuer or "").strip()
    if not issuer:
        if provider == GENERIC:
            raise InvalidOidcConfig("issuer is required for a generic OIDC provider")
        issuer = GOOGLE_ISSUER if provider == GOOGLE else f"{ENTRA_AUTHORITY}/{tenant}/v2.0"
    issuer = check_url(issuer, "issuer", allow_loopback_http=allow_loopback_http)
    if urlsplit(issuer).query:
        raise InvalidOidcConfig("issuer must have no query")
    chosen = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip())) or DEFAULT_SCOPES
    if "openid" not in chosen:
        chosen = ("openid", *chosen)
    if len(chosen) > MAX_SCOPES or not all(_SCOPE_RE.match(s) for s in chosen):
        raise InvalidOidcConfig(f"scopes: at most {MAX_SCOPES} OAuth scope tokens")
    return ProviderConfig(provider, issuer, client_id, chosen, domains, tenant, bool(enabled))


def validate_client_secret(secret: str) -> str:
    """The secret as given (it is the IdP's, spelled as it says); InvalidOidcConfig when
    too long or not printable. The message never repeats it."""
    if len(secret) > MAX_CLIENT_SECRET or not _VSCHAR_RE.match(secret) or secret != secret.strip():
        raise InvalidOidcConfig(
            f"client_secret must be 1 to {MAX_CLIENT_SECRET} printable characters"
        )
    return secret


def check_discovered_issuer(config: ProviderConfig, discovered: str) -> str:
    """The issuer the discovery document states, when it may stand for ``config``'s:
    the same (OpenID Connect Discovery 1.0, 4.3), or for Entra the multi-tenant template
    (``…/{tenantid}/v2.0``) which each token's ``tid`` fills. Else InvalidOidcConfig."""
    if discovered == config.issuer:
        return discovered
    if config.provider == ENTRA and TENANT_PLACEHOLDER in discovered:
        return discovered
    raise InvalidOidcConfig(
        "the provider's discovery document names another issuer than the one configured"
    )


def validate_origin(origin: str) -> str:
    """The tenant's canonical origin as the gateway passes it (scheme, host, port)."""
    if not _ORIGIN_RE.match(origin or "") or len(origin) > 300:
        raise InvalidOidcConfig(
            "origin must be the tenant's canonical origin, scheme://host[:port]"
        )
    return origin


def redirect_uri(origin: str, provider: str) -> str:
    """The callback URL registered at the IdP: always built from the canonical origin."""
    return f"{validate_origin(origin)}/auth/oidc/{validate_provider(provider)}/callback"


# -- a login's secrets ------------------------------------------------------------------------


def new_state() -> str:
    return secrets.token_urlsafe(STATE_BYTES)


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """RFC 7636 4.1: 43 to 128 characters of [A-Za-z0-9-._~]; 64 random bytes give 86."""
    return secrets.token_urlsafe(64)


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def state_key(key: bytes, state: str) -> bytes:
    """What the pending login is stored under: a keyed hash of the state, so the table
    holds nothing a reader could complete a login with."""
    return hmac.new(key, b"oidc-state:" + state.encode(), hashlib.sha256).digest()


def binding_hash(key: bytes, binding: str) -> bytes:
    """The keyed hash of the browser binding (the cookie set when the login began)."""
    return hmac.new(key, b"oidc-browser:" + binding.encode(), hashlib.sha256).digest()


# -- the callback's values --------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    """The authorization response as the browser brought it back (RFC 6749 4.1.2)."""

    state: str
    code: str = ""
    error: str = ""
    error_description: str = ""
    issuer: str = ""  # RFC 9207 ``iss``, when the provider sends it


def printable_excerpt(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def parse_callback(
    *, state: str, code: str = "", error: str = "", error_description: str = "", iss: str = ""
) -> Callback:
    """The callback's values, checked: a state of the shape we issue (else
    ``WHY_STATE_MALFORMED``), then either an error code (NQSCHARs; its description is kept
    as a printable excerpt for the audit) or a code (1 to MAX_CODE VSCHARs, else
    ``WHY_CODE_MALFORMED``). Raises OidcRefused; never anything else."""
    if not isinstance(state, str) or not _STATE_RE.match(state):
        raise OidcRefused(WHY_STATE_MALFORMED)
    if error:
        shown = error if _ERROR_RE.match(error) else "invalid-error-code"
        return Callback(
            state,
            error=shown,
            error_description=printable_excerpt(error_description or "", MAX_ERROR_DESCRIPTION),
        )
    if not code or len(code) > MAX_CODE or not _VSCHAR_RE.match(code):
        raise OidcRefused(WHY_CODE_MALFORMED)
    if iss and (len(iss) > MAX_URL or not _VSCHAR_RE.match(iss)):
        raise OidcRefused(WHY_RESPONSE_ISSUER)
    return Callback(state, code=code, issuer=iss)


# -- the ID token ---------------------------------------------------------------------------


def check_header(header: Mapping[str, Any]) -> str:
    """The token's algorithm when it is one we accept (ALGORITHMS) and no critical
    extension is asked for; else OidcRefused(WHY_ALGORITHM). Keys named by the header
    (``jku``, ``x5u``, ``jwk``) are never used: only the provider's JWKS is."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS or "crit" in header:
        raise OidcRefused(WHY_ALGORITHM)
    return alg


@dataclass(frozen=True)
class Expected:
    """What the ID token must say: from the configuration, the discovery document's issuer
    (for Entra possibly the ``{tenantid}`` template) and the pending login's nonce."""

    provider: str
    issuer: str
    client_id: str
    nonce: str
    hosted_domains: tuple[str, ...] = ()
    entra_tenant: str = ""


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise OidcRefused(WHY_CLAIM_TYPE)
    return float(value)


def _text(claims: Mapping[str, Any], name: str, limit: int = 1024) -> str:
    value = claims.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise OidcRefused(WHY_CLAIM_TYPE)
    return value


def _boolean(value: Any) -> bool | None:
    """A boolean claim; some providers send "true"/"false" strings. None when absent or
    anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def expected_issuers(expected: Expected, token_tid: str) -> tuple[str, ...]:
    if expected.provider == ENTRA and TENANT_PLACEHOLDER in expected.issuer:
        return (expected.issuer.replace(TENANT_PLACEHOLDER, token_tid),) if token_tid else ()
    if expected.provider == GOOGLE and expected.issuer == GOOGLE_ISSUER:
        return GOOGLE_ISSUER_ALIASES
    return (expected.issuer,)


def _check_audience(claims: Mapping[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise OidcRefused(WHY_AUDIENCE)
    if client_id not in audiences:
        raise OidcRefused(WHY_AUDIENCE)
    azp = claims.get("azp")
    # OpenID Connect Core 3.1.3.7 (4, 5): several audiences need azp, and azp is us.
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise OidcRefused(WHY_AZP)


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp = _number(claims, "exp", required=True)
    iat = _number(claims, "iat", required=True)
    nbf = _number(claims, "nbf", required=False)
    assert exp is not None and iat is not None
    if now > exp + leeway:
        raise OidcRefused(WHY_EXPIRED)
    if iat > now + leeway:
        raise OidcRefused(WHY_ISSUED_IN_FUTURE)
    if nbf is not None and nbf > now + leeway:
        raise OidcRefused(WHY_NOT_YET_VALID)


def _email(claims: Mapping[str, Any], provider: str) -> tuple[str, bool]:
    """(email, verified). ``email_verified`` false is refused here; absent, the email
    counts as unverified (sign-in then refuses it), except where the provider vouches
    otherwise: Entra's ``xms_edov`` (the email's domain is verified by its owner)."""
    email = _text(claims, "email", MAX_EMAIL).strip()
    if not email and provider == ENTRA:
        email = _text(claims, "preferred_username", MAX_EMAIL).strip()
    if not email or "@" not in email:
        raise OidcRefused(WHY_EMAIL_MISSING)
    said = _boolean(claims.get("email_verified"))
    if said is False or ("email_verified" in claims and said is None):
        raise OidcRefused(WHY_EMAIL_UNVERIFIED)
    if said is None and provider == ENTRA:
        said = _boolean(claims.get("xms_edov"))
    return email, said is True


def _display_name(claims: Mapping[str, Any]) -> str:
    name = _text(claims, "name").strip()
    if not name:
        parts = (_text(claims, "given_name").strip(), _text(claims, "family_name").strip())
        name = " ".join(p for p in parts if p)
    return printable_excerpt(name, MAX_DISPLAY_NAME)


def _mfa_evidence(claims: Mapping[str, Any]) -> tuple[str, ...]:
    amr = claims.get("amr")
    values = [a for a in amr if isinstance(a, str)][:20] if isinstance(amr, list) else []
    acr = claims.get("acr")
    if isinstance(acr, str) and acr:
        values.append(acr)
    return tuple(printable_excerpt(v, 200) for v in values)


def check_claims(
    claims: Mapping[str, Any], expected: Expected, *, now: float, leeway: float = LEEWAY_SECONDS
) -> ExternalIdentity:
    """The person a verified ID token vouches for, or OidcRefused naming the first rule the
    token breaks (order: issuer, audience, times, nonce, provider rules, subject, email)."""
    if not isinstance(claims, Mapping):
        raise OidcRefused(WHY_TOKEN_MALFORMED)
    tid = _text(claims, "tid", 64).lower()
    iss = _text(claims, "iss", MAX_URL)
    issuers = expected_issuers(expected, tid)
    if not iss or iss not in issuers:
        raise OidcRefused(WHY_ISSUER)
    _check_audience(claims, expected.client_id)
    _check_times(claims, now, leeway)
    nonce = _text(claims, "nonce", 256)
    if not nonce or not hmac.compare_digest(nonce.encode(), expected.nonce.encode()):
        raise OidcRefused(WHY_NONCE)
    attributes: dict[str, str] = {}
    sub = _text(claims, "sub", 255)
    if expected.provider == ENTRA:
        if not tid or tid != expected.entra_tenant:
            raise OidcRefused(WHY_TENANT)
        oid = _text(claims, "oid", 64).lower()
        if not _GUID_RE.match(oid):
            raise OidcRefused(WHY_SUBJECT)
        subject = f"{tid}:{oid}"
        attributes["tid"] = tid
        username = _text(claims, "preferred_username", MAX_EMAIL)
        if username:
            attributes["preferred_username"] = printable_excerpt(username, MAX_EMAIL)
    else:
        if not sub:
            raise OidcRefused(WHY_SUBJECT)
        subject = sub
    if expected.provider == GOOGLE:
        hd = _text(claims, "hd", 253).lower()
        if not hd or hd not in expected.hosted_domains:
            raise OidcRefused(WHY_HOSTED_DOMAIN)
        attributes["hd"] = hd
    email, verified = _email(claims, expected.provider)
    return ExternalIdentity(
        method=OIDC_PREFIX + expected.provider,
        issuer=issuers[0],  # one spelling per issuer: the account key must not vary
        subject=subject,
        email=email,
        email_verified=verified,
        display_name=_display_name(claims),
        mfa_evidence=_mfa_evidence(claims),
        attributes=attributes,
    )
