"""End to end through the gateway: an admin token creates only tokens no wider than itself."""

from __future__ import annotations

import pytest

from tests.conftest import unique
from tests.e2e.test_gateway_kit import (  # noqa: F401 - fixtures
    gateway_fixture,
    make_token,
    new_source,
)
from tests.helpers import create_tenant

pytestmark = pytest.mark.e2e


def test_an_admin_token_cannot_mint_a_wider_token(gateway, channels):
    slug = unique("tm")
    create_tenant(channels, slug)
    _, admin = make_token(
        channels, slug, "api:read", "admin", cidrs=["127.0.0.0/8"], expires_in=3600
    )

    def mint(body):
        return gateway.call("POST", "/admin/api/v1/tokens", slug, admin, body, source=new_source())

    for wider in (
        {"scopes": ["api:write"], "cidrs": ["127.0.0.0/8"], "expires_in_seconds": 60},
        {"scopes": ["api:read"], "cidrs": ["127.0.0.0/8"]},  # never expires
        {"scopes": ["api:read"], "cidrs": ["127.0.0.0/8"], "expires_in_seconds": 7200},
        {"scopes": ["api:read"], "expires_in_seconds": 60},  # any address
        {"scopes": ["api:read"], "cidrs": ["0.0.0.0/0"], "expires_in_seconds": 60},
    ):
        r = mint(wider)
        assert r.status == 403, (wider, r)
        assert r.headers["content-type"] == "application/problem+json"
    ok = mint({"scopes": ["api:read"], "cidrs": ["127.0.0.0/16"], "expires_in_seconds": 60})
    assert ok.status == 201, ok
    assert ok.json()["token"]["cidrs"] == ["127.0.0.0/16"]
