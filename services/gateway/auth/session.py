"""Session-cookie authentication at the gateway, and setting the cookie after a sign-in.

Checks, cheapest first, as for tokens (bearer.py): one cookie of our name (two are
ambiguous: a sibling host may have planted one) → its syntax → the id's keyed checksum →
per-address look-up budget (ids not cached) → the cached record (identity's LookupSession on
a miss; unknown ids cached as such) → tenant, secret (constant time), revocation, the user
still active, absolute expiry, idle expiry. A record that looks idle-expired is looked up
once more before refusing (another worker may have moved it on). Use moves the idle expiry on
at identity at most once per ``touch_seconds`` per session, in the background; the reply
replaces the cached record. Every refusal is the same 401.

The cookie: ``__Host-ontrack_session`` (no Domain, Path=/, so only this host gets it),
``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the tenant's canonical origin is https, and
Max-Age up to the session's absolute expiry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import grpc
from prometheus_client import Counter
from starlette.responses import RedirectResponse, Response

from ontrackio.gateway.auth.cookies import cookie_value
from ontrackio.gateway.auth.use_reports import UseReporter
from ontrackio.gateway.client_ip import IPAddress
from ontrackio.gateway.hosts import TenantNotServed
from ontrackio.gateway.problems import ProblemResponse, problem
from ontrackio.gateway.ratelimit import TokenBucketLimiter
from ontrackio.gateway.ttlcache import TTLCache
from ontrackio.gateway.upstream import Upstream
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.sessions import rules
from ontrackio.identity.signin.next_path import safe_next
from ontrackio.identity.v1 import sessions_pb2 as spb

log = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-ontrack_session"
SIGN_IN_DETAIL = "Sign in first."

SESSION_FAILURES = Counter(
    "ontrack_gateway_session_failures", "Requests refused by session checks.", ["reason"]
)


@dataclass(frozen=True)
class SessionPrincipal:
    """A signed-in user of one tenant; ``scopes`` are what their roles grant."""

    user_id: str
    tenant: str
    session_id: str = ""
    roles: frozenset[str] = frozenset()
    method: str = ""
    mfa_source: str = ""
    stage: str = "full"  # full | step_up | enrol (identity/mfa/policy.py)

    @property
    def actor(self) -> str:
        return rules.user_actor(self.user_id)

    @property
    def scopes(self) -> frozenset[str]:
        return roles.scopes_of(self.roles)


@dataclass(frozen=True)
class SessionRecord:
    """What the gateway keeps of one session (times in POSIX seconds)."""

    id: str
    tenant: str
    user_id: str
    roles: frozenset[str]
    secret_hash: bytes
    idle_expires_at: float
    expires_at: float
    ended: bool  # revoked, or the user deactivated
    method: str
    mfa_source: str
    stage: str = "full"


def record_from_pb(r: spb.SessionRecord) -> SessionRecord:
    return SessionRecord(
        id=r.id,
        tenant=r.tenant,
        user_id=r.user_id,
        roles=frozenset(r.roles),
        secret_hash=bytes(r.secret_hash),
        idle_expires_at=r.idle_expires_at.ToNanoseconds() / 1e9,
        expires_at=r.expires_at.ToNanoseconds() / 1e9,
        ended=r.HasField("revoked_at") or not r.user_active,
        method=r.method,
        mfa_source=r.mfa_source,
        stage=r.stage or "full",
    )


def session_cookie(cookie_headers: list[str]) -> str | None:
    """The session cookie's value; None if absent, empty, or sent more than once (ambiguous:
    a second cookie may have been planted by a sibling domain, so neither is believed)."""
    return cookie_value(cookie_headers, SESSION_COOKIE) or None


def sign_in_required() -> ProblemResponse:
    return problem(
        401,
        detail=SIGN_IN_DETAIL,
        headers={"WWW-Authenticate": f'Cookie realm="ontrack", cookie-name="{SESSION_COOKIE}"'},
    )


MFA_PAGE = "/signin/mfa"
MFA_REQUIRED_TYPE = "https://problems.ontrack.io/mfa-required"


def mfa_required(stage: str) -> ProblemResponse:
    """A session the MFA policy holds back asked for something else: 403, with the stage
    (``step_up``: present a factor; ``enrol``: set one up) and where to do it."""
    detail = (
        "Confirm it is you with your second factor first."
        if stage == "step_up"
        else "Set up a second factor first: your organisation requires MFA."
    )
    return problem(
        403,
        detail=detail,
        type_=MFA_REQUIRED_TYPE,
        title="MFA required",
        extensions={"stage": stage, "mfa_page": MFA_PAGE},
    )


def mfa_redirect(path: str) -> Response:
    """For a page asked for by a session at an MFA stage: to the MFA page and back."""
    nxt = safe_next(path)
    query = "" if nxt == "/" else "?" + urlencode({"next": nxt})
    return Response(status_code=303, headers={"Location": f"{MFA_PAGE}{query}"})


def sign_in_redirect(path: str) -> Response:
    """For a page (HTML) that needs a session: back to the sign-in page, which returns to
    ``path`` afterwards (a path of this host; sign-in checks it again, next_path.safe_next)."""
    nxt = safe_next(path)
    query = "" if nxt == "/" else "?" + urlencode({"next": nxt})
    return Response(status_code=303, headers={"Location": f"/signin{query}"})


class SessionChecker:
    """Checks presented session cookies (the SessionAuthenticator of endpoint.py)."""

    def __init__(
        self,
        upstream: Upstream,
        key: bytes,
        cache: TTLCache[SessionRecord],
        *,
        lookup_limiter: TokenBucketLimiter,
        touch_seconds: float = rules.TOUCH_SECONDS,
        clock=time.time,
    ) -> None:
        self.upstream = upstream
        self.key = key
        self.cache = cache
        self.lookup_limiter = lookup_limiter
        self.clock = clock
        self.uses = UseReporter(self._send_touch, touch_seconds, cache.max_entries)

    async def authenticate(
        self, cookie: str, tenant: str, client_ip: IPAddress | None
    ) -> SessionPrincipal | None:
        result = await self._check(cookie, tenant, client_ip)
        if isinstance(result, str):
            SESSION_FAILURES.labels(result).inc()
            return None
        return result

    async def _check(
        self, cookie: str, tenant: str, client_ip: IPAddress | None
    ) -> SessionPrincipal | str:
        parts = rules.split_cookie(cookie)
        if parts is None:
            return "malformed"
        session_id, secret = parts
        if not rules.id_is_genuine(self.key, session_id):
            return "forged"
        key = (tenant, session_id)
        if not self.cache.cached(key) and not self.lookup_limiter.hit(f"s:{client_ip}").allowed:
            return "throttled"
        record = await self.cache.get(key, lambda: self._lookup(tenant, session_id))
        if record is None:
            return "unknown"
        if record.tenant != tenant:
            return "other_tenant"
        if not rules.secret_matches(self.key, session_id, secret, record.secret_hash):
            return "secret"
        now = self.clock()
        if record.ended or now >= record.expires_at:
            return "ended"
        if now >= record.idle_expires_at:
            # Perhaps moved on through another worker: ask identity before refusing.
            self.cache.invalidate(key)
            record = await self.cache.get(key, lambda: self._lookup(tenant, session_id))
            if record is None or record.ended or now >= record.idle_expires_at:
                return "idle"
        self.uses.used(tenant, session_id, client_ip)
        return SessionPrincipal(
            record.user_id,
            tenant,
            session_id,
            record.roles,
            record.method,
            record.mfa_source,
            record.stage,
        )

    async def _lookup(self, tenant: str, session_id: str) -> SessionRecord | None:
        try:
            reply = await self.upstream.call(
                self.upstream.sessions.LookupSession,
                spb.LookupSessionRequest(id=session_id),
                tenant=tenant,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
        return record_from_pb(reply)

    def forget(self, tenant: str, session_ids: list[str], user_id: str = "") -> None:
        """Drop sessions from the cache (a sessions_revoked event); with ``user_id``, every
        cached session of that user of the tenant too."""
        for session_id in session_ids:
            self.cache.invalidate((tenant, session_id))
        if user_id:
            for key, record in list(self.cache.items()):
                if key[0] == tenant and record is not None and record.user_id == user_id:
                    self.cache.invalidate(key)

    def forget_tenant(self, tenant: str) -> None:
        for key, _ in list(self.cache.items()):
            if key[0] == tenant:
                self.cache.invalidate(key)

    async def _send_touch(self, tenant: str, session_id: str, address: str) -> bool:
        """Move the session's idle expiry on; the record identity returns replaces the
        cached one, unless an invalidation came in meanwhile (the cache's generation)."""
        generation = self.cache.generation
        try:
            reply = await self.upstream.call(
                self.upstream.sessions.TouchSession,
                spb.TouchSessionRequest(id=session_id, address=address),
                tenant=tenant,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:  # ended meanwhile: forget it now
                self.cache.invalidate((tenant, session_id))
                return True
            log.info("touching session failed: %s", exc.code().name)  # the next use retries
            return False
        except TenantNotServed:
            return False
        self.cache.put((tenant, session_id), record_from_pb(reply), if_generation=generation)
        return True


def grant_response(
    grant: spb.SessionGrant, *, secure: bool, now: float | None = None, status: int = 303
) -> Response:
    """The answer to a successful sign-in: the session cookie set, the browser sent on to
    ``grant.next`` (a same-host path the sign-in flow checked: next_url.safe_next)."""
    from ontrackio.identity.signin.next_path import safe_next

    nxt = safe_next(grant.next)
    if grant.stage and grant.stage != "full":  # the MFA policy holds the session: MFA first
        nxt = MFA_PAGE + ("" if nxt == "/" else "?" + urlencode({"next": nxt}))
    response = RedirectResponse(nxt, status_code=status)
    set_session_cookie(response, grant, secure=secure, now=now)
    response.headers["Cache-Control"] = "no-store"
    return response


def set_session_cookie(
    response: Response, grant: spb.SessionGrant, *, secure: bool, now: float | None = None
) -> None:
    max_age = max(0, int(grant.expires_at.ToSeconds() - (now if now is not None else time.time())))
    response.set_cookie(
        SESSION_COOKIE,
        grant.cookie,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
