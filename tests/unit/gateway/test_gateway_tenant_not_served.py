"""A tenant refused by the services after the edge let it through is an unknown host to the client.

The refusals are produced by the real tenant gate (core.directory.TenantDirectory and
core.grpcstatus.status_for, as the grpc interceptor does), so a change of their wording fails here.
"""

from __future__ import annotations

import grpc
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.errors import DomainError
from ontrackio.core.grpcstatus import status_for
from ontrackio.gateway.hosts import TenantHostMiddleware, TenantNotServed, tenant_resolver
from ontrackio.gateway.hosts import TenantInfo as EdgeTenant
from ontrackio.gateway.problems import install_problem_handlers
from ontrackio.gateway.upstream import tenant_refused

ACME = EdgeTenant("t-1", "acme")


def _gate_refusal(slug: str, status: str | None) -> tuple[grpc.StatusCode, str]:
    def lookup(s):
        return None if status is None else TenantInfo(s, status, "main", "business")

    with pytest.raises(DomainError) as info:
        TenantDirectory(lookup, ttl=0).require_active(slug)
    return status_for(info.value)


@pytest.mark.parametrize("status", ["suspended", "provisioning", "deleting", "deleted", None])
def test_the_gates_refusals_of_this_tenant_are_recognised(status):
    code, details = _gate_refusal("acme", status)
    assert tenant_refused(code, details, "acme")
    assert not tenant_refused(code, details, "acme2")  # another tenant's name: not ours


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.NOT_FOUND, "asset not found"),
        (grpc.StatusCode.FAILED_PRECONDITION, "asset is archived"),
        (grpc.StatusCode.FAILED_PRECONDITION, "suspended"),
        (grpc.StatusCode.FAILED_PRECONDITION, "tenant 'acme' is suspended; retry"),
        (grpc.StatusCode.INVALID_ARGUMENT, "tenant 'acme' is suspended"),
        (grpc.StatusCode.NOT_FOUND, None),
    ],
)
def test_other_errors_are_not_tenant_refusals(code, details):
    assert not tenant_refused(code, details, "acme")


async def _acme(slug):
    return ACME if slug == "acme" else None


async def _none(domain):
    return None


def _edge(app):
    return TenantHostMiddleware(
        app,
        base_domain="localhost",
        resolve_tenant=tenant_resolver("localhost", by_slug=_acme, by_custom_domain=_none),
    )


async def _refused_route(request):
    raise TenantNotServed()


async def _refused_middleware(scope, receive, send):
    raise TenantNotServed()


def _same(a, b):
    return (a.status, sorted(a.headers), a.body) == (b.status, sorted(b.headers), b.body)


def test_raised_in_a_route_or_a_middleware_it_is_the_unknown_host_404(asgi):
    app = Starlette(routes=[Route("/x", _refused_route)])
    install_problem_handlers(app)
    unknown = asgi(_edge(app), "/x", host="nobody.localhost")
    assert unknown.status == 404
    assert _same(asgi(_edge(app), "/x"), unknown)
    assert _same(asgi(_edge(_refused_middleware), "/x"), unknown)
