"""Sessions for end-to-end tests: users with roles, and a session row seeded the way
identity's sessions.store.start writes one (the sign-in flows have their own tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from ontrackio.core.db.clusters import Clusters
from ontrackio.gateway.auth.session import SESSION_COOKIE
from ontrackio.identity.sessions import rules
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.identity.v1 import sessions_pb2 as spb
from ontrackio.identity.v1 import sessions_pb2_grpc as sgrpc
from tests.conftest import unique
from tests.helpers import md


@dataclass(frozen=True)
class Browser:
    """What a signed-in browser holds: its cookie, the CSRF token its page was given."""

    user_id: str
    session_id: str
    cookie: str
    csrf: str

    def headers(self, gateway, slug: str, *, unsafe: bool = False) -> list[tuple[str, str]]:
        hdrs = [("Cookie", f"{SESSION_COOKIE}={self.cookie}")]
        if unsafe:
            hdrs += [("Origin", f"http://{gateway.host(slug)}"), ("X-CSRF-Token", self.csrf)]
        return hdrs


def create_user(channels, slug: str, *roles: str, email: str | None = None) -> str:
    user = igrpc.UserServiceStub(channels["identity"]).CreateUser(
        ipb.CreateUserRequest(email=email or f"{unique('u')}@example.com", display_name="E2E"),
        metadata=md(slug),
        timeout=10,
    )
    if roles:
        sessions_stub(channels).SetUserRoles(
            spb.SetUserRolesRequest(user_id=user.id, roles=list(roles)),
            metadata=md(slug),
            timeout=10,
        )
    return user.id


def sessions_stub(channels):
    return sgrpc.SessionServiceStub(channels["identity"])


def seed_session(
    settings,
    slug: str,
    user_id: str,
    *,
    idle: timedelta = timedelta(hours=1),
    absolute: timedelta = timedelta(hours=8),
) -> Browser:
    key = settings.token_hash_key.get_secret_value().encode()
    issued = rules.issue(key)
    now = datetime.now(UTC)
    conninfo = Clusters(settings).tenant_conninfo("identity", slug, "main")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sessions (id, secret_hash, user_id, method, idle_expires_at, expires_at)"
            " VALUES (%s, %s, %s, 'password', %s, %s)",
            (issued.token_id, issued.secret_hash, user_id, now + idle, now + absolute),
        )
    return Browser(user_id, issued.token_id, issued.bearer, rules.csrf_token(key, issued.token_id))
