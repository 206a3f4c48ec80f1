"""The api's outbox relay: every committed event is published and its row marked sent."""

from __future__ import annotations

import psycopg

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core.bus import Publisher
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.pools import PoolManager
from ontrackio.core.db.tenantdb import TenantDatabases
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.relay import Relay
from ontrackio.identity import users
from tests.conftest import unique
from tests.helpers import create_tenant


def test_flush_leaves_every_committed_event_published_and_marked(channels, settings):
    slug = unique("r")
    create_tenant(channels, slug)
    pools = PoolManager(max_total=2, max_per_tenant=2, idle_seconds=30, acquire_timeout=5)
    amqp = settings.amqp_url.get_secret_value()
    relay = Relay([Publisher(amqp), Publisher(amqp)], pools)
    clusters = Clusters(settings)
    dbs = TenantDatabases(
        "identity",
        deployment=settings.deployment,
        clusters=clusters,
        pools=pools,
        directory=TenantDirectory(lambda s: None, 0),
        publisher=None,
        relay=relay,
        events=DEPLOYMENT.events,
    )
    info = TenantInfo(slug, "active", "main", "business")
    try:
        for i in range(60):
            with dbs.unit_of_work(info) as u:
                users.create(u, f"r{i}@{slug}.example", "")
        assert relay.flush(10)
        with psycopg.connect(clusters.tenant_conninfo("identity", slug, "main")) as conn:
            sent, unsent = conn.execute(
                "SELECT count(*) FILTER (WHERE published_at IS NOT NULL),"
                " count(*) FILTER (WHERE published_at IS NULL) FROM outbox"
                " WHERE type = 'identity.user_created'"
            ).fetchone()
        assert (sent, unsent) == (60, 0)
        assert relay.pending == 0 and relay.unsent == 0
    finally:
        relay.close()
        pools.close()
