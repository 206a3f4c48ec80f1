"""Every response names its request with an id of the gateway's own; a client's is dropped."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ontrackio.gateway.request_id import RequestIdMiddleware, request_id_of
from tests.unit.gateway.conftest import call


def _app():
    async def echo(request: Request):
        return PlainTextResponse(request_id_of(request))

    async def forged(request: Request):
        return PlainTextResponse("no", status_code=404, headers={"X-Request-Id": "forged"})

    return RequestIdMiddleware(Starlette(routes=[Route("/", echo), Route("/404", forged)]))


def test_each_request_gets_its_own_id_which_the_handler_sees():
    app = _app()
    first = call(app, "/", headers=[("X-Request-Id", "client-chosen")])
    second = call(app, "/")
    assert first.header("x-request-id") == first.body.decode() and len(first.body) == 32
    assert first.body != b"client-chosen" and second.body != first.body


def test_a_response_cannot_name_another_id():
    r = call(_app(), "/404")
    ids = [v for k, v in r.headers if k.lower() == b"x-request-id"]
    assert len(ids) == 1 and ids != [b"forged"]
