import grpc
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ontrackio.gateway.problems import (
    GRPC_TO_HTTP,
    ProblemGuardMiddleware,
    install_problem_handlers,
    problem,
    problem_from_grpc,
)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.INTERNAL, 502),
        (grpc.StatusCode.UNKNOWN, 502),
    ],
)
def test_grpc_codes_map_to_http(code, status):
    assert GRPC_TO_HTTP[code] == status
    assert problem_from_grpc(code, "x").status_code == status


def test_every_grpc_code_is_mapped():
    assert set(GRPC_TO_HTTP) == set(grpc.StatusCode)


def test_internal_details_never_leak():
    body = problem_from_grpc(grpc.StatusCode.INTERNAL, "psycopg: relation tenants missing").body
    assert b"psycopg" not in body
    body = problem_from_grpc(grpc.StatusCode.UNAUTHENTICATED, "token hash mismatch for t_123").body
    assert b"t_123" not in body


def test_user_facing_details_are_kept():
    body = problem_from_grpc(grpc.StatusCode.INVALID_ARGUMENT, "name must not be empty").body
    assert b"name must not be empty" in body


def test_problem_fields_and_media_type(asgi):
    result = asgi(problem(409, detail="Already there.", instance="/assets/1"))
    assert result.content_type == "application/problem+json"
    assert result.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "Already there.",
        "instance": "/assets/1",
    }


async def boom(request):
    raise RuntimeError("secret internals")


async def teapot(request):
    raise HTTPException(400, detail="Bad input here.")


async def upstream(request):
    raise FakeRpcError(grpc.StatusCode.NOT_FOUND, "Asset not found.")


async def upstream_down(request):
    raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connect to 10.1.2.3:50051 failed")


def make_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/boom", boom),
            Route("/bad", teapot),
            Route("/upstream", upstream),
            Route("/down", upstream_down),
            Route("/only-post", boom, methods=["POST"]),
        ]
    )
    install_problem_handlers(app)
    return app


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/bad", "GET", 400),
        ("/nowhere", "GET", 404),
        ("/only-post", "GET", 405),
        ("/upstream", "GET", 404),
        ("/down", "GET", 503),
    ],
)
def test_handlers_render_problems(asgi, path, method, status):
    result = asgi(ProblemGuardMiddleware(make_app()), path, method=method)
    assert result.status == status
    assert result.is_problem
    assert b"10.1.2.3" not in result.body


def test_method_not_allowed_keeps_allow_header(asgi):
    result = asgi(ProblemGuardMiddleware(make_app()), "/only-post")
    assert result.header("allow") == "POST"


def test_unhandled_exception_is_a_500_problem_without_internals(asgi):
    with pytest.raises(RuntimeError):  # the guard re-raises after the response, for the server log
        asgi(ProblemGuardMiddleware(make_app()), "/boom")


def test_unhandled_exception_response_is_problem(asgi):
    sent = []

    async def app(scope, receive, send):
        await make_app()(scope, receive, _collect(sent, send))

    with pytest.raises(RuntimeError):
        asgi(ProblemGuardMiddleware(app), "/boom")
    start = sent[0]
    assert start["status"] == 500
    assert (b"content-type", b"application/problem+json") in start["headers"]
    assert b"secret internals" not in b"".join(m.get("body", b"") for m in sent[1:])


def _collect(sent, send):
    async def collecting(message):
        sent.append(message)
        await send(message)

    return collecting


def test_guard_turns_middleware_crash_into_500_problem(asgi):
    async def crashing(scope, receive, send):
        raise ValueError("bug in a middleware")

    result = asgi(ProblemGuardMiddleware(crashing))
    assert result.status == 500
    assert result.is_problem
    assert b"bug" not in result.body


def test_guard_maps_escaped_grpc_errors(asgi):
    async def resolver_down(scope, receive, send):
        raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "identity:50051 refused")

    result = asgi(ProblemGuardMiddleware(resolver_down))
    assert result.status == 503
    assert result.is_problem
    assert b"identity" not in result.body


def test_guard_rewrites_plain_error_bodies(asgi):
    inner = PlainTextResponse("stack trace here", status_code=404, headers={"Retry-After": "3"})
    result = asgi(ProblemGuardMiddleware(inner))
    assert result.status == 404
    assert result.is_problem
    assert result.header("retry-after") == "3"
    assert int(result.header("content-length")) == len(result.body)
    assert b"stack trace" not in result.body


def test_guard_leaves_success_and_problems_alone(asgi):
    ok = asgi(ProblemGuardMiddleware(JSONResponse({"a": 1})))
    assert ok.json() == {"a": 1}
    existing = asgi(ProblemGuardMiddleware(problem(400, detail="Keep me.")))
    assert existing.json()["detail"] == "Keep me."
