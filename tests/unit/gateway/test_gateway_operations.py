"""Declared operations against tiny apps: each auth kind, body kind and error format."""

from __future__ import annotations

import json

import grpc
import pytest

from ontrackio.gateway.api.formats import SCIM_ERROR_SCHEMA
from ontrackio.gateway.api.operation import (
    PUBLIC,
    SESSION,
    Call,
    ErrorFormat,
    Operation,
    Param,
    bearer,
    form_body,
    json_body,
    scim_body,
    upload,
)
from ontrackio.gateway.auth.session import SESSION_COOKIE
from ontrackio.gateway.openapi import document
from tests.unit.gateway.api_kit import INSIDE, OUTSIDE, DictSessions, csrf_headers, tiny_app

NAME = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": {"type": "string", "maxLength": 50}, "note": {"type": "string"}},
}
ran: list[str] = []


async def echo(c: Call, services):
    ran.append(c.actor or "-")
    return {"actor": c.actor, "params": c.params, "body": c.body, "services": services}


async def count_chunks(c: Call, services):
    sizes = []
    try:
        async for chunk in c.stream():
            sizes.append(len(chunk))
    finally:
        ran.append(f"chunks:{sizes}")
    return {"sizes": sizes}


async def scim_not_found(c: Call, services):
    raise grpc.aio.AioRpcError(
        grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "user not found"
    )


def op(method, path, auth, **kw):
    handler = kw.pop("handler", echo)
    return Operation(method, path, path.strip("/").replace("/", "_"), "", handler, auth, {}, **kw)


OPS = [
    op(
        "GET",
        "/things/{id}",
        bearer("api:read"),
        params=(
            Param("id", "path", {"type": "string", "maxLength": 20}),
            Param("q", "query", {"type": "string"}),
        ),
    ),
    op("POST", "/things", bearer("api:write"), body=json_body(NAME)),
    op("POST", "/both", bearer("api:read", "api:write")),
    op("GET", "/open", PUBLIC),
    op("POST", "/forms", PUBLIC, body=form_body(NAME, max_bytes=100, max_fields=3)),
    op("GET", "/me", SESSION),
    op("POST", "/me/form", SESSION, body=form_body(NAME)),
    op("POST", "/scim/v2/Users", bearer("scim"), body=scim_body(NAME), errors=ErrorFormat.SCIM),
    op(
        "GET",
        "/scim/v2/Users/{id}",
        bearer("scim"),
        errors=ErrorFormat.SCIM,
        handler=scim_not_found,
    ),
    op(
        "POST",
        "/imports",
        bearer("api:write"),
        body=upload("text/csv", "application/x-ndjson", max_bytes=1000),
        handler=count_chunks,
    ),
    op("GET", "/admin/things", bearer("admin"), admin=True),
    op("GET", "/api/v1/secret", bearer("admin"), admin=True),
]
APP = tiny_app(OPS, services="the services")
EDGE_APP = tiny_app(OPS, services="the services", edge=True)
SESSIONS = DictSessions({"s-ada": "ada"})
SESSION_APP = tiny_app(OPS, sessions=SESSIONS)


def auth(token):
    return [("Authorization", f"Bearer {token}")]


JSON = ("Content-Type", "application/json")
FORM = ("Content-Type", "application/x-www-form-urlencoded")
SCIM = ("Content-Type", "application/scim+json")


def is_scim_error(r, status):
    body = r.json()
    return (
        r.status == status
        and r.content_type == "application/scim+json"
        and body["schemas"] == [SCIM_ERROR_SCHEMA]
        and body["status"] == str(status)
    )


# -- authentication -----------------------------------------------------------------------------


def test_bearer_scopes_and_services_reach_the_handler(asgi):
    r = asgi(APP, "/things/abc", headers=auth("reader"))
    assert r.status == 200, r.body
    assert r.json() == {
        "actor": "token:t-read",
        "params": {"id": "abc"},
        "body": None,
        "services": "the services",
    }
    assert asgi(APP, "/things/abc").status == 401
    assert asgi(APP, "/things/abc", headers=auth("nobody")).status == 401
    denied = asgi(APP, "/things/abc", headers=auth("scim"))
    assert denied.status == 403 and denied.is_problem and "api:read" in denied.json()["detail"]


def test_every_declared_scope_is_required(asgi):
    r = asgi(APP, "/both", method="POST", headers=auth("reader"))
    assert r.status == 403 and "api:write" in r.json()["detail"]
    assert asgi(APP, "/both", method="POST", headers=auth("writer")).status == 200


def test_public_operations_need_nothing(asgi):
    r = asgi(APP, "/open")
    assert r.status == 200 and r.json()["actor"] is None


def test_session_without_an_authenticator_is_401(asgi):
    r = asgi(APP, "/me", headers=[("Cookie", f"{SESSION_COOKIE}=s-ada")])
    assert r.status == 401 and r.is_problem
    assert r.header("www-authenticate").startswith("Cookie")


def test_session_is_checked_by_the_authenticator(asgi):
    ok = asgi(SESSION_APP, "/me", headers=[("Cookie", f"theme=dark; {SESSION_COOKIE}=s-ada")])
    assert ok.status == 200 and ok.json()["actor"] == "user:ada"
    for cookies in (
        [],
        [("Cookie", f"{SESSION_COOKIE}=s-bob")],
        [("Cookie", f"{SESSION_COOKIE}=")],
        [("Cookie", f"{SESSION_COOKIE}=s-ada; {SESSION_COOKIE}=s-ada")],
        [("Cookie", f"{SESSION_COOKIE}=s-ada"), ("Cookie", f"{SESSION_COOKIE}=s-bob")],
        [("Authorization", "Bearer reader")],  # a token is no session
    ):
        assert asgi(SESSION_APP, "/me", headers=cookies).status == 401, cookies


def test_session_form(asgi):
    r = asgi(
        SESSION_APP,
        "/me/form",
        method="POST",
        headers=[("Cookie", f"{SESSION_COOKIE}=s-ada"), FORM, *csrf_headers("s-ada")],
        body=[b"name=Ada+L%C3%B6we"],
    )
    assert r.status == 200 and r.json()["body"] == {"name": "Ada Löwe"}


# -- JSON ---------------------------------------------------------------------------------------


def test_json_body_is_validated(asgi):
    ok = asgi(
        APP, "/things", method="POST", headers=[*auth("writer"), JSON], body=[b'{"name": "x"}']
    )
    assert ok.status == 200 and ok.json()["body"] == {"name": "x"}
    for body in (b'{"name": 1}', b'{"nope": 1}', b"[1]", b"{", b"", b'{"name": NaN}'):
        r = asgi(APP, "/things", method="POST", headers=[*auth("writer"), JSON], body=[body])
        assert r.status == 400 and r.is_problem, body
    wrong = asgi(APP, "/things", method="POST", headers=[*auth("writer"), FORM], body=[b"name=x"])
    assert wrong.status == 415 and wrong.is_problem


@pytest.mark.parametrize(
    "body",
    [
        rb'{"name": "\ud800"}',
        rb'{"name": "a\udfffb"}',
        rb'{"\ud800": "x"}',
        rb'{"name": "a\u0000b"}',
        rb'{"name": "x", "note": "\u0000"}',
        rb'{"a\u0000": 1}',
    ],
)
def test_nul_and_lone_surrogates_are_400_naming_where(asgi, body):
    r = asgi(APP, "/things", method="POST", headers=[*auth("writer"), JSON], body=[body])
    assert r.status == 400 and r.is_problem
    detail = r.json()["detail"]
    assert ("NUL" in detail or "surrogate" in detail) and "body" in detail
    # a paired surrogate is an ordinary character
    good = rb'{"name": "\ud83d\ude00"}'
    r = asgi(APP, "/things", method="POST", headers=[*auth("writer"), JSON], body=[good])
    assert r.status == 200 and r.json()["body"] == {"name": "😀"}


@pytest.mark.parametrize(
    "target",
    ["/things/a%00b", "/things/ok?q=a%00b", "/things/ok?q=%00"],
)
def test_nul_in_path_and_query_parameters_is_400(asgi, target):
    path, _, query = target.partition("?")
    r = asgi(APP, path, headers=auth("reader"), query=query)
    assert r.status == 400 and r.is_problem and "NUL" in r.json()["detail"]


def test_lone_surrogate_in_a_decoded_path_parameter_is_400(asgi):
    # A server that decodes paths with surrogateescape would hand this on; refused all the same.
    r = asgi(APP, "/things/x", headers=auth("reader"), decoded_path="/things/a\udc80b")
    assert r.status == 400 and r.is_problem and "surrogate" in r.json()["detail"]


def test_json_depth_limit(asgi):
    app = tiny_app(OPS, max_json_depth=3)
    deep = {"name": "x", "note": [[[1]]]}
    r = asgi(
        app,
        "/things",
        method="POST",
        headers=[*auth("writer"), JSON],
        body=[json.dumps(deep).encode()],
    )
    assert r.status == 400 and "nested deeper" in r.json()["detail"]


def test_json_refusals_through_the_whole_edge(asgi):
    headers = [*auth("writer"), JSON]
    deep = asgi(EDGE_APP, "/things", method="POST", headers=headers, body=[b"[" * 400 + b"]" * 400])
    invalid = asgi(EDGE_APP, "/things", method="POST", headers=headers, body=[b'{"a":'])
    nul = asgi(EDGE_APP, "/things", method="POST", headers=headers, body=[rb'{"name": "\u0000"}'])
    fine = asgi(EDGE_APP, "/things", method="POST", headers=headers, body=[b'{"name": "x"}'])
    assert [r.status for r in (deep, invalid, nul, fine)] == [400, 400, 400, 200]
    assert all(r.is_problem for r in (deep, invalid, nul))
    big = asgi(EDGE_APP, "/things", method="POST", headers=headers, body=[b" " * 20_000])
    assert big.status == 413 and big.is_problem


# -- forms --------------------------------------------------------------------------------------


def test_form_fields_and_limits(asgi):
    def post(body: bytes, headers=(FORM,)):
        return asgi(APP, "/forms", method="POST", headers=list(headers), body=[body])

    ok = post(b"name=Ada&note=hi%21")
    assert ok.status == 200 and ok.json()["body"] == {"name": "Ada", "note": "hi!"}
    cases = {
        b"note=x": "required",
        b"name=a&name=b": "once",
        b"name=a&x=1&y=2&z=3": "more than 3 fields",
        b"name=%ff": "UTF-8",
        b"name=\xff": "UTF-8",
        b"name=a%00b": "NUL",
        b"name=a&bogus=1": "unknown",
        b"": "empty",
    }
    for body, words in cases.items():
        r = post(body)
        assert r.status == 400 and r.is_problem and words in r.json()["detail"], (body, r.body)
    too_big = post(b"name=" + b"a" * 200)
    assert too_big.status == 413 and too_big.is_problem
    assert post(b'{"name": "x"}', headers=[JSON]).status == 415


# -- SCIM ---------------------------------------------------------------------------------------


def test_scim_body_and_scim_errors(asgi):
    ok = asgi(
        APP,
        "/scim/v2/Users",
        method="POST",
        headers=[*auth("scim"), SCIM],
        body=[b'{"name": "ada"}'],
    )
    assert ok.status == 200 and ok.json()["body"] == {"name": "ada"}
    plain = asgi(
        APP,
        "/scim/v2/Users",
        method="POST",
        headers=[*auth("scim"), JSON],
        body=[b'{"name": "ada"}'],
    )
    assert plain.status == 200
    for app in (APP, EDGE_APP):  # the problem guard leaves SCIM errors as they are
        host = {} if app is APP else {"client": INSIDE}
        assert is_scim_error(asgi(app, "/scim/v2/Users", method="POST", **host), 401)
        assert is_scim_error(
            asgi(app, "/scim/v2/Users", method="POST", headers=[*auth("reader"), SCIM], **host), 403
        )
        bad = asgi(
            app,
            "/scim/v2/Users",
            method="POST",
            headers=[*auth("scim"), SCIM],
            body=[b'{"name": "\\ud800"}'],
            **host,
        )
        assert is_scim_error(bad, 400) and "surrogate" in bad.json()["detail"]
        assert bad.json()["scimType"] == "invalidValue"
        assert is_scim_error(
            asgi(
                app,
                "/scim/v2/Users",
                method="POST",
                headers=[*auth("scim"), FORM],
                body=[b"a=b"],
                **host,
            ),
            415,
        )
        missing = asgi(app, "/scim/v2/Users/u1", headers=auth("scim"), **host)
        assert is_scim_error(missing, 404) and missing.json()["detail"] == "user not found"


# -- uploads ------------------------------------------------------------------------------------


def test_upload_is_streamed_not_buffered(asgi):
    ran.clear()
    chunks = [b"a,b\n" * 10, b"c,d\n" * 10, b"e,f\n" * 10]
    r = asgi(
        APP,
        "/imports",
        method="POST",
        headers=[*auth("writer"), ("Content-Type", "text/csv")],
        body=chunks,
    )
    assert r.status == 200 and r.json()["sizes"] == [40, 40, 40]
    ndjson = asgi(
        APP,
        "/imports",
        method="POST",
        headers=[*auth("writer"), ("Content-Type", "application/x-ndjson")],
        body=[b'{"a": 1}\n'],
    )
    assert ndjson.status == 200


def test_upload_limit_is_enforced_while_streaming(asgi):
    ran.clear()
    chunks = [b"x" * 400, b"x" * 400, b"x" * 400, b"x" * 400]
    r = asgi(
        APP,
        "/imports",
        method="POST",
        headers=[*auth("writer"), ("Content-Type", "text/csv")],
        body=chunks,
    )
    assert r.status == 413 and r.is_problem
    assert ran == ["chunks:[400, 400]"]  # the handler saw the body as it came, then the stop


def test_upload_media_type_and_auth_come_first(asgi):
    ran.clear()
    r = asgi(APP, "/imports", method="POST", headers=[*auth("writer"), JSON], body=[b"{}"])
    assert r.status == 415 and r.is_problem
    assert (
        asgi(APP, "/imports", method="POST", headers=[("Content-Type", "text/csv")]).status == 401
    )
    assert ran == []


# -- admin --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/things", "/api/v1/secret"])
def test_admin_operations_apply_the_allowlist(asgi, path):
    ran.clear()
    denied = asgi(APP, path, headers=auth("admin"), client=OUTSIDE)
    assert denied.status == 403 and denied.is_problem and ran == []
    assert asgi(APP, path, headers=auth("admin"), client=INSIDE).status == 200
    assert ran == ["token:t-admin"]


def test_declarations_refuse_inconsistent_admin_flags():
    with pytest.raises(ValueError, match="admin"):
        op("GET", "/admin/x", bearer("admin"))
    with pytest.raises(ValueError, match="public"):
        op("GET", "/x", PUBLIC, admin=True)
    with pytest.raises(ValueError):
        bearer()


# -- OpenAPI ------------------------------------------------------------------------------------


def test_document_reflects_content_types_and_security():
    doc = document(OPS, title="t", version="1")
    paths = doc["paths"]
    assert paths["/things"]["post"]["requestBody"]["content"].keys() == {"application/json"}
    assert paths["/forms"]["post"]["requestBody"]["content"].keys() == {
        "application/x-www-form-urlencoded"
    }
    assert paths["/scim/v2/Users"]["post"]["requestBody"]["content"].keys() == {
        "application/scim+json",
        "application/json",
    }
    assert paths["/imports"]["post"]["requestBody"]["content"].keys() == {
        "text/csv",
        "application/x-ndjson",
    }
    assert paths["/things"]["post"]["security"] == [{"bearer": ["api:write"]}]
    assert paths["/both"]["post"]["security"] == [{"bearer": ["api:read", "api:write"]}]
    assert paths["/me"]["get"]["security"] == [{"session": []}]
    assert paths["/open"]["get"]["security"] == []
    assert doc["components"]["securitySchemes"]["session"]["in"] == "cookie"
    scim_401 = paths["/scim/v2/Users"]["post"]["responses"]["401"]
    assert "application/scim+json" in scim_401["content"]
    assert paths["/things"]["post"]["responses"]["415"] == {"$ref": "#/components/responses/E415"}
    assert paths["/admin/things"]["get"]["x-admin"] is True
