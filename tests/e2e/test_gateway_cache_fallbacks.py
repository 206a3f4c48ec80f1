"""End to end: what bounds the gateway's token and allowlist caches when identity's
invalidation events do not reach it (docs/gateway.md, "Revocation within a second" and
"Admin IP allowlist"):

* the TTLs: a revoked token is still accepted until `TOKEN_CACHE_SECONDS` after it was
  cached and refused after, and a changed allowlist likewise with `ALLOWLIST_CACHE_SECONDS`;
* a broker reconnect: the caches are cleared, so a revocation missed while the gateway's
  listener was cut off takes effect at once, not at the end of the TTL.

The gateway under test runs on a broker virtual host of its own: its listener is connected and
its queue bound, but identity publishes on the deployment's virtual host, so every event is
lost for it, deterministically. Nothing of the shared stack is disturbed.
"""

from __future__ import annotations

import time

import pytest

from ontrackio.devtools import infra
from ontrackio.gateway.settings import GatewaySettings
from ontrackio.identity.v1 import access_pb2 as apb
from tests.conftest import unique
from tests.e2e.test_gateway_kit import Gateway, access_stub, make_token
from tests.helpers import create_tenant, eventually, extra_gateway, md

pytestmark = pytest.mark.e2e

TOKEN_TTL = GatewaySettings.model_fields["token_cache_seconds"].default
ALLOWLIST_TTL = GatewaySettings.model_fields["allowlist_cache_seconds"].default


@pytest.fixture(scope="module")
def deaf_broker(infrastructure, deployment):
    """A broker account (virtual host and user) of this module's own, removed at the end."""
    if not infra.can_manage_vhosts():
        pytest.fail("these tests need rabbitmqctl to give a gateway a virtual host of its own")
    broker = infra.DeploymentBroker.create(infrastructure, f"{deployment}deaf")
    yield broker
    broker.delete()


def connections(vhost: str) -> set[str]:
    """Names of the broker connections on `vhost` (only ever this module's own)."""
    out = infra.rabbitmqctl("list_connections", "-q", "--no-table-headers", "vhost", "name")
    assert out.returncode == 0, out.stderr
    rows = (line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)
    return {name for v, name in rows if v == vhost}


def revoke(channels, slug: str, token_id: str) -> None:
    access_stub(channels).RevokeToken(
        apb.RevokeTokenRequest(id=token_id), metadata=md(slug), timeout=10
    )


def deny_everyone_here(channels, slug: str) -> None:
    """An allowlist no test address (127.0.x.y) is in."""
    access_stub(channels).SetAllowlist(
        apb.SetAllowlistRequest(cidrs=["192.0.2.0/24"], confirm_lockout=True),
        metadata=md(slug),
        timeout=10,
    )


def probes(gw: Gateway, slug: str, reader: str, admin: str):
    """Two requests whose status shows the caches: a read with the `reader` token (401 once
    its revocation is seen) and the allowlist with the `admin` token (403 once a change
    denying this address is seen)."""

    def assets() -> int:
        return gw.call("GET", "/api/v1/assets?page_size=1", slug, reader).status

    def allowlist() -> int:
        return gw.call("GET", "/admin/api/v1/allowlist", slug, admin).status

    return assets, allowlist


def test_without_events_a_revocation_and_an_allowlist_change_wait_for_their_ttls(
    system, channels, deaf_broker, tmp_path
):
    slug = unique("ct")
    create_tenant(channels, slug)
    token_id, reader = make_token(channels, slug, "api:read")
    _, admin = make_token(channels, slug, "admin")
    with extra_gateway(
        system,
        "gateway-deaf-ttl",
        tmp_path,
        ONTRACK_AMQP_URL=deaf_broker.url,
        ONTRACK_GATEWAY_WORKERS="1",  # one cache: every request meets the same one
    ) as port:
        assets, allowlist = probes(Gateway(port), slug, reader, admin)

        t_token = time.monotonic()  # the record is cached during this request, not earlier
        assert assets() == 200
        t_allow = time.monotonic()
        assert allowlist() == 200
        revoke(channels, slug, token_id)
        deny_everyone_here(channels, slug)

        seen: dict[str, list[tuple[float, float, int]]] = {"token": [], "allowlist": []}

        # Paced (interval) under the per-token rate limit, so no answer is a 429.
        def observe(kind, started, call, refused):
            sent = time.monotonic() - started
            status = call()
            seen[kind].append((sent, time.monotonic() - started, status))
            return status == refused

        def both_refused():
            token_done = seen["token"] and seen["token"][-1][2] == 401
            allow_done = seen["allowlist"] and seen["allowlist"][-1][2] == 403
            if not token_done:
                token_done = observe("token", t_token, assets, 401)
            if not allow_done:
                allow_done = observe("allowlist", t_allow, allowlist, 403)
            return token_done and allow_done

        eventually(both_refused, timeout=max(TOKEN_TTL, ALLOWLIST_TTL) + 20, interval=0.15)

    for kind, ttl, refused in (("token", TOKEN_TTL, 401), ("allowlist", ALLOWLIST_TTL, 403)):
        # Not before: every request answered before the TTL ran out met the cached answer.
        early = [s for _, answered, s in seen[kind] if answered < ttl]
        assert early and set(early) == {200}, (kind, seen[kind])
        # Then refused (what the wait above waited for), and nothing but 200 before that.
        assert {s for _, _, s in seen[kind][:-1]} <= {200} and seen[kind][-1][2] == refused


def test_a_broker_reconnect_clears_the_token_and_allowlist_caches(
    system, channels, deaf_broker, tmp_path
):
    slug = unique("cr")
    create_tenant(channels, slug)
    token_id, reader = make_token(channels, slug, "api:read")
    _, admin = make_token(channels, slug, "admin")
    ttl = 60  # the longest allowed: only a cleared cache explains a refusal within the test
    with extra_gateway(
        system,
        "gateway-deaf-reconnect",
        tmp_path,
        ONTRACK_AMQP_URL=deaf_broker.url,
        ONTRACK_GATEWAY_WORKERS="1",
        ONTRACK_GATEWAY_TOKEN_CACHE_SECONDS=str(ttl),
        ONTRACK_GATEWAY_ALLOWLIST_CACHE_SECONDS=str(ttl),
    ) as port:
        assets, allowlist = probes(Gateway(port), slug, reader, admin)

        cached_at = time.monotonic()
        assert assets() == 200 and allowlist() == 200
        revoke(channels, slug, token_id)
        deny_everyone_here(channels, slug)
        # Control: the events never reach this gateway, so its caches still answer.
        assert assets() == 200 and allowlist() == 200

        before = connections(deaf_broker.vhost)
        assert len(before) == 1, before  # the one worker's listener
        out = infra.rabbitmqctl(
            "close_all_connections", "--vhost", deaf_broker.vhost, "reconnect test"
        )
        assert out.returncode == 0, out.stderr
        # The listener reconnects (a new connection on the virtual host) ...
        eventually(lambda: connections(deaf_broker.vhost) - before, timeout=30)
        # ... and its caches were cleared: both changes take effect long before the TTL.
        eventually(lambda: assets() == 401 and allowlist() == 403, timeout=10)
        assert time.monotonic() - cached_at < ttl
