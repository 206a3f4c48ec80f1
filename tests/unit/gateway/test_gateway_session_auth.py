"""Session-authenticated operations at the endpoint wrapper: roles grant scopes, and unsafe
cookie requests pass the Origin check and carry the session's CSRF token."""

from __future__ import annotations

from ontrackio.gateway.api.operation import (
    SESSION,
    Call,
    Operation,
    credential,
    form_body,
    json_body,
)
from ontrackio.gateway.auth.session import SESSION_COOKIE
from tests.unit.gateway.api_kit import DictSessions, csrf_headers, tiny_app


async def echo(c: Call, services):
    return {"actor": c.actor, "body": c.body}


def op(method, path, auth, **kw):
    return Operation(method, path, path.strip("/").replace("/", "_"), "", echo, auth, {}, **kw)


OBJ = {"type": "object"}
FORM_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}}
OPS = [
    op("GET", "/api/v1/things", credential("api:read")),
    op("POST", "/api/v1/things", credential("api:write"), body=json_body(OBJ)),
    op("POST", "/api/v1/form", credential("api:write"), body=form_body(FORM_SCHEMA)),
    op("GET", "/admin/api/v1/things", credential("admin"), admin=True),
    op("GET", "/api/v1/audit", credential("audit:read")),
    op("GET", "/a-page", SESSION, response_media_type="text/html"),
]
SESSIONS = DictSessions(
    {
        "s-mem": ("mem", ("member",)),
        "s-adm": ("adm", ("admin",)),
        "s-aud": ("aud", ("auditor",)),
        "s-own": ("own", ("owner",)),
    }
)
APP = tiny_app(OPS, sessions=SESSIONS)
JSON = ("Content-Type", "application/json")
FORM = ("Content-Type", "application/x-www-form-urlencoded")


def cookie(session_id):
    return ("Cookie", f"{SESSION_COOKIE}={session_id}")


def test_roles_grant_the_scopes_an_operation_names(asgi):
    from tests.unit.gateway.api_kit import INSIDE

    def get(path, sid):
        return asgi(APP, path, headers=[cookie(sid)], client=INSIDE).status

    assert get("/api/v1/things", "s-aud") == 200
    assert get("/api/v1/audit", "s-aud") == 200
    assert get("/api/v1/audit", "s-mem") == 403
    assert get("/admin/api/v1/things", "s-mem") == 403
    assert get("/admin/api/v1/things", "s-aud") == 403
    assert get("/admin/api/v1/things", "s-adm") == 200
    assert get("/admin/api/v1/things", "s-own") == 200


def test_the_actor_is_the_signed_in_user(asgi):
    r = asgi(APP, "/api/v1/things", headers=[cookie("s-mem")])
    assert r.status == 200 and r.json()["actor"] == "user:mem"


def test_an_auditor_changes_nothing(asgi):
    r = asgi(
        APP,
        "/api/v1/things",
        method="POST",
        headers=[cookie("s-aud"), JSON, *csrf_headers("s-aud")],
        body=[b"{}"],
    )
    assert r.status == 403 and "api:write" in r.json()["detail"]


def test_no_credential_gets_the_token_challenge(asgi):
    r = asgi(APP, "/api/v1/things")
    assert r.status == 401 and r.header("www-authenticate").startswith("Bearer")


def test_a_token_still_works_and_needs_no_csrf(asgi):
    r = asgi(
        APP,
        "/api/v1/things",
        method="POST",
        headers=[("Authorization", "Bearer writer"), JSON],
        body=[b"{}"],
    )
    assert r.status == 200 and r.json()["actor"] == "token:t-write"


def post(headers, path="/api/v1/things", body=b"{}", kind=JSON):
    return dict(method="POST", headers=[kind, *headers], body=[body])


def test_unsafe_cookie_requests_need_origin_and_token(asgi):
    ok = asgi(APP, "/api/v1/things", **post([cookie("s-mem"), *csrf_headers("s-mem")]))
    assert ok.status == 200
    token = csrf_headers("s-mem")[1]
    refused = [
        [cookie("s-mem")],  # neither
        [cookie("s-mem"), token],  # no Origin, no Referer
        [cookie("s-mem"), ("Origin", "http://acme.localhost")],  # no token
        [cookie("s-mem"), ("Origin", "http://evil.example"), token],
        [cookie("s-mem"), ("Origin", "https://acme.localhost"), token],  # another scheme
        [cookie("s-mem"), ("Origin", "http://acme.localhost:8443"), token],  # another port
        [cookie("s-mem"), ("Origin", "null"), token],
        # an opaque origin is refused even with this site's Referer
        [cookie("s-mem"), ("Origin", "null"), ("Referer", "http://acme.localhost/x"), token],
        [cookie("s-mem"), ("Origin", "http://acme.localhost"), ("X-CSRF-Token", "x" * 43)],
        [cookie("s-mem"), *csrf_headers("s-adm")],  # another session's token
        [cookie("s-mem"), ("Origin", "http://acme.localhost"), token, token],  # twice
    ]
    for headers in refused:
        r = asgi(APP, "/api/v1/things", **post(headers))
        assert r.status == 403 and r.is_problem, headers


def test_referer_stands_in_for_a_missing_origin(asgi):
    token = csrf_headers("s-mem")[1]
    headers = [cookie("s-mem"), ("Referer", "http://acme.localhost/app/page?x=1"), token]
    assert asgi(APP, "/api/v1/things", **post(headers)).status == 200
    headers = [cookie("s-mem"), ("Referer", "http://acme.localhost.evil.example/"), token]
    assert asgi(APP, "/api/v1/things", **post(headers)).status == 403


def test_a_form_may_carry_the_token_as_a_field(asgi):
    from ontrackio.identity.sessions import rules
    from tests.unit.gateway.api_kit import CSRF_KEY

    field = rules.csrf_token(CSRF_KEY, "s-mem")
    origin = ("Origin", "http://acme.localhost")
    good = f"name=x&csrf_token={field}".encode()
    r = asgi(APP, "/api/v1/form", **post([cookie("s-mem"), origin], body=good, kind=FORM))
    assert r.status == 200
    bad = b"name=x&csrf_token=nope"
    r = asgi(APP, "/api/v1/form", **post([cookie("s-mem"), origin], body=bad, kind=FORM))
    assert r.status == 403
    r = asgi(APP, "/api/v1/form", **post([cookie("s-mem"), origin], body=b"name=x", kind=FORM))
    assert r.status == 403


def test_a_page_sends_a_browser_without_a_session_to_sign_in_and_back(asgi):
    r = asgi(APP, "/a-page")
    assert r.status == 303 and r.header("location") == "/signin?next=%2Fa-page"
    stale = asgi(APP, "/a-page", headers=[cookie("s-gone")])
    assert stale.status == 303
    assert asgi(APP, "/a-page", headers=[cookie("s-mem")]).status == 200
    # JSON operations keep their 401 challenge
    assert asgi(APP, "/api/v1/things", headers=[cookie("s-gone")]).status == 401
