"""A session the MFA policy holds (stage step_up or enrol) reaches only the operations
declared ``during_mfa``: the API refuses it with the mfa-required problem, a page sends it to
the MFA page and back; a full session is not affected."""

from __future__ import annotations

import pytest

from ontrackio.gateway.api.operation import SESSION, SESSION_DURING_MFA, Call, Operation, credential
from ontrackio.gateway.auth.session import MFA_PAGE, MFA_REQUIRED_TYPE, SESSION_COOKIE
from tests.unit.gateway.api_kit import INSIDE, DictSessions, tiny_app


async def echo(c: Call, services):
    return {"actor": c.actor}


def op(path, auth, **kw):
    return Operation("GET", path, path.strip("/").replace("/", "_"), "", echo, auth, {}, **kw)


APP = tiny_app(
    [
        op("/api/v1/things", credential("api:read")),
        op("/api/v1/me", SESSION),
        op("/api/v1/mfa", SESSION_DURING_MFA),
        op("/a-page", SESSION, response_media_type="text/html"),
    ],
    sessions=DictSessions(
        {
            "s-full": ("u1", ("owner",), "full"),
            "s-step": ("u2", ("owner",), "step_up"),
            "s-enrol": ("u3", ("member",), "enrol"),
        }
    ),
)


def get(asgi, path, sid):
    return asgi(APP, path, headers=[("Cookie", f"{SESSION_COOKIE}={sid}")], client=INSIDE)


@pytest.mark.parametrize("sid,stage", [("s-step", "step_up"), ("s-enrol", "enrol")])
def test_a_held_session_is_refused_everything_but_the_mfa_operations(asgi, sid, stage):
    for path in ("/api/v1/things", "/api/v1/me"):
        r = get(asgi, path, sid)
        assert r.status == 403, (path, r)
        body = r.json()
        assert body["type"] == MFA_REQUIRED_TYPE and body["stage"] == stage
        assert body["mfa_page"] == MFA_PAGE
    assert get(asgi, "/api/v1/mfa", sid).status == 200
    page = get(asgi, "/a-page", sid)
    assert page.status == 303 and page.header("location") == f"{MFA_PAGE}?next=%2Fa-page"


def test_a_full_session_reaches_everything_its_roles_allow(asgi):
    for path in ("/api/v1/things", "/api/v1/me", "/api/v1/mfa", "/a-page"):
        assert get(asgi, path, "s-full").status == 200, path
