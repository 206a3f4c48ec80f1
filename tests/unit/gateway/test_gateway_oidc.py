"""The gateway's OIDC operations (gateway/api/oidc.py) against a tiny app with a recording
identity: the gateway only forwards — the callback's raw query values exactly as a browser
sent them, the binding cookie, the canonical origin from the settings (never the request's
Host or forwarded headers) — and sets or clears the cookies. Any callback query is either
forwarded or a 400 problem, never a 500."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.gateway.api import oidc
from ontrackio.gateway.api.services import Services
from ontrackio.gateway.auth.session import SESSION_COOKIE
from ontrackio.gateway.settings import GatewaySettings
from ontrackio.identity.v1 import oidc_pb2 as opb
from ontrackio.identity.v1 import sessions_pb2 as spb
from tests.unit.gateway.api_kit import INSIDE, tiny_app
from tests.unit.gateway.conftest import call
from tests.unit.gateway.strategies import PROPERTY

ORIGIN = "https://acme.ontrack.example"


class RecordingOidc:
    """identity's OidcService as the gateway sees it; ``refuse`` makes CompleteLogin fail."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, object]] = []
        self.refuse: grpc.StatusCode | None = None

    async def StartLogin(self, request, **kw):
        self.asked.append(("StartLogin", request))
        return opb.StartOidcLoginResponse(
            authorization_url="https://idp.example/authorize?state=s",
            binding="b1nd1ng",
            expires_in_seconds=600,
        )

    async def CompleteLogin(self, request, **kw):
        self.asked.append(("CompleteLogin", request))
        if self.refuse is not None:
            raise grpc.aio.AioRpcError(
                self.refuse, grpc.aio.Metadata(), grpc.aio.Metadata(), "sign-in refused"
            )
        expires = Timestamp()
        expires.FromSeconds(4_000_000_000)
        return spb.SessionGrant(
            cookie="ots_cookie", session_id="s1", user_id="u1", expires_at=expires, next="/x"
        )

    async def GetOidcConfig(self, request, **kw):
        self.asked.append(("GetOidcConfig", request))
        return opb.OidcConfig(
            provider=request.provider,
            issuer="https://accounts.google.com",
            client_id="c",
            enabled=True,
            has_client_secret=True,
            redirect_path=f"/auth/oidc/{request.provider}/callback",
        )

    async def SetOidcConfig(self, request, **kw):
        self.asked.append(("SetOidcConfig", request))
        return opb.OidcConfig(
            provider=request.provider,
            issuer=request.issuer,
            client_id=request.client_id,
            has_client_secret=True,
            redirect_path=f"/auth/oidc/{request.provider}/callback",
        )


class Upstream:
    def __init__(self) -> None:
        self.oidc = RecordingOidc()
        self.timeouts: list[float | None] = []

    async def call(self, method, request, *, timeout=None, **kw):
        self.timeouts.append(timeout)
        return await method(request)


def app(upstream: Upstream):
    settings = GatewaySettings(
        base_domain="ontrack.example", public_scheme="https", public_port=443
    )
    services = Services(upstream, None, None, None, settings)  # type: ignore[arg-type]
    return tiny_app(oidc.OPERATIONS, services=services)


def set_cookies(r) -> dict[str, str]:
    lines = [v.decode("latin-1") for k, v in r.headers if k == b"set-cookie"]
    return {line.split("=", 1)[0]: line for line in lines}


def test_login_sends_the_browser_to_the_idp_with_a_binding_cookie():
    up = Upstream()
    r = call(
        app(up),
        "/auth/oidc/google/login",
        query="next=%2Fassets%3Fpage%3D2",
        host="evil.example",
        headers=[("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "http")],
    )
    assert r.status == 302, r.body
    assert r.header("location") == "https://idp.example/authorize?state=s"
    line = set_cookies(r)[oidc.BINDING_COOKIE]
    assert line.startswith(f"{oidc.BINDING_COOKIE}=b1nd1ng;")
    for part in ("HttpOnly", "Secure", "SameSite=lax", "Path=/", "Max-Age=600"):
        assert part in line
    assert "Domain" not in line
    ((name, asked),) = up.oidc.asked
    assert name == "StartLogin"
    assert (asked.provider, asked.next, asked.origin) == ("google", "/assets?page=2", ORIGIN)
    assert up.timeouts == [oidc.START_DEADLINE_SECONDS]


def test_login_makes_next_safe():
    for evil in ("//evil.example", "https://evil.example", "/\\evil", "%2F%2Fevil"):
        up = Upstream()
        assert call(app(up), "/auth/oidc/oidc/login", query="next=" + quote(evil)).status == 302
        assert up.oidc.asked[0][1].next == "/", evil


def test_an_unknown_provider_is_a_400_before_identity():
    up = Upstream()
    r = call(app(up), "/auth/oidc/saml/login")
    assert r.status == 400 and r.is_problem and up.oidc.asked == []


def test_the_callback_forwards_what_the_browser_sent_and_sets_the_session():
    up = Upstream()
    r = call(
        app(up),
        "/auth/oidc/entra/callback",
        query="code=c0de&state=st&iss=https%3A%2F%2Fidp&session_state=ignored",
        headers=[("Cookie", f"theme=dark; {oidc.BINDING_COOKIE}=b1nd1ng"), ("User-Agent", "UA/1")],
        client=INSIDE,
    )
    assert r.status == 303, r.body
    assert r.header("location") == "/x"
    cookies = set_cookies(r)
    assert cookies[SESSION_COOKIE].startswith(f"{SESSION_COOKIE}=ots_cookie;")
    assert "Max-Age=0" in cookies[oidc.BINDING_COOKIE]
    ((_, asked),) = up.oidc.asked
    assert (asked.provider, asked.code, asked.state, asked.iss) == (
        "entra",
        "c0de",
        "st",
        "https://idp",
    )
    assert (asked.binding, asked.origin, asked.user_agent) == ("b1nd1ng", ORIGIN, "UA/1")
    assert asked.client_address == INSIDE[0]
    assert up.timeouts == [oidc.COMPLETE_DEADLINE_SECONDS]


def test_two_binding_cookies_are_no_binding():
    up = Upstream()
    two = [("Cookie", f"{oidc.BINDING_COOKIE}=a; {oidc.BINDING_COOKIE}=b")]
    assert call(app(up), "/auth/oidc/oidc/callback", query="state=s", headers=two).status == 303
    assert up.oidc.asked[0][1].binding == ""


def test_a_refused_callback_is_a_403_and_clears_the_binding():
    up = Upstream()
    up.oidc.refuse = grpc.StatusCode.PERMISSION_DENIED
    r = call(app(up), "/auth/oidc/oidc/callback", query="state=s&code=c")
    assert r.status == 403 and r.is_problem
    assert "Max-Age=0" in set_cookies(r)[oidc.BINDING_COOKIE]
    assert SESSION_COOKIE not in set_cookies(r)
    up.oidc.refuse = grpc.StatusCode.UNAVAILABLE
    assert call(app(up), "/auth/oidc/oidc/callback", query="state=s&code=c").status == 503


NAMES = ["code", "state", "error", "error_description", "iss", "session_state", "hd", "x"]
VALUE = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "\ud800", "a" * 5000, "%", "%zz", "&", "=", "+", "\u202e"]),
)


def encode(pairs: list[tuple[str, str]], how: int) -> str:
    def q(s: str) -> str:
        return quote(s.encode("utf-8", "surrogatepass"), safe="") if how else s

    return "&".join(f"{q(k)}={q(v)}" for k, v in pairs)


LIMITS = {p.name: p.schema.get("maxLength") for p in oidc.CALLBACK_PARAMS}


@PROPERTY
@given(
    pairs=st.lists(st.tuples(st.sampled_from(NAMES), VALUE), max_size=6),
    how=st.sampled_from([0, 1]),
)
@example(pairs=[("state", "\x00")], how=1)
@example(pairs=[("code", "a"), ("code", "b")], how=1)
@example(pairs=[("state", "\ud800")], how=1)
def test_any_callback_query_is_forwarded_as_sent_or_refused_with_a_400(pairs, how):
    up = Upstream()
    # The bytes a browser sends, as ASGI hands them on (latin-1 text of the raw bytes).
    query = encode(pairs, how).encode("utf-8", "surrogatepass").decode("latin-1")
    r = call(app(up), "/auth/oidc/oidc/callback", query=query)
    assert r.status in (303, 400), (query, r.status, r.body)
    # What Starlette reads from the query (parse_qsl, the reference): each declared name once,
    # no NUL or lone surrogate, within its length.
    read = parse_qsl(query, keep_blank_values=True)
    declared = [(k, v) for k, v in read if k in LIMITS]
    names = [k for k, _ in declared]
    fine = len(names) == len(set(names)) and all(
        "\x00" not in v
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
        and (LIMITS[k] is None or len(v) <= LIMITS[k])
        for k, v in declared
    )
    if r.status == 400:
        assert r.is_problem and not fine and up.oidc.asked == []
        return
    assert fine
    ((_, asked),) = up.oidc.asked
    values = dict(declared)
    for name in ("code", "state", "error", "error_description", "iss"):
        assert getattr(asked, name) == values.get(name, ""), name


def test_the_admin_configuration_forwards_the_secret_and_shows_the_redirect_uri():
    up = Upstream()
    body = b'{"client_id": "c", "client_secret": "s3cret", "hosted_domains": ["acme.example"]}'
    r = call(
        app(up),
        "/admin/api/v1/sso/oidc/google",
        method="PUT",
        headers=[("Authorization", "Bearer admin"), ("Content-Type", "application/json")],
        body=[body],
        client=INSIDE,
    )
    assert r.status == 200, r.body
    shown = r.json()
    assert shown["redirect_uri"] == f"{ORIGIN}/auth/oidc/google/callback"
    assert "s3cret" not in r.body.decode() and shown["has_client_secret"] is True
    ((_, asked),) = up.oidc.asked
    assert (asked.client_secret, list(asked.hosted_domains), asked.enabled) == (
        "s3cret",
        ["acme.example"],
        True,
    )
    got = call(
        app(up),
        "/admin/api/v1/sso/oidc/google",
        headers=[("Authorization", "Bearer admin")],
        client=INSIDE,
    )
    assert got.status == 200 and "client_secret" not in got.json()


def test_the_admin_configuration_needs_an_admin():
    up = Upstream()
    path = "/admin/api/v1/sso/oidc/entra"
    assert call(app(up), path, client=INSIDE).status == 401
    assert (
        call(app(up), path, headers=[("Authorization", "Bearer reader")], client=INSIDE).status
        == 403
    )
    assert up.oidc.asked == []


def test_the_sign_in_page_links_the_enabled_providers_it_knows_with_the_next_query():
    links = oidc.login_links(["google", "oidc", "unknown"], "")
    assert links == [
        ("Sign in with Google", "/auth/oidc/google/login"),
        ("Sign in with your organisation's account", "/auth/oidc/oidc/login"),
    ]
    with_next = oidc.login_links(["entra"], "?next=%2Fassets")
    assert with_next == [("Sign in with Microsoft", "/auth/oidc/entra/login?next=%2Fassets")]
