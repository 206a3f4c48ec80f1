"""Outages as docs/architecture.md and docs/gateway.md state they are answered, on the real
processes: a tenant database that refuses connections is `UNAVAILABLE` over gRPC and a 503
problem at the gateway; an exhausted pool makes callers wait up to
ONTRACK_POOL_ACQUIRE_TIMEOUT, then `UNAVAILABLE`; events written while the broker is
unreachable are delivered once it returns, by the writer's retry sweep.

Only what a test created is touched: its tenants' databases, and extra api processes of its
own (tests/extra_api.py) where a setting or a fault must not reach the shared stack."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from psycopg import sql

from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.inventory.v1 import inventory_pb2 as vpb
from ontrackio.inventory.v1 import inventory_pb2_grpc as vgrpc
from ontrackio.privacy.v1 import privacy_pb2, privacy_pb2_grpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import gateway_fixture, make_token  # noqa: F401 - fixture
from tests.extra_api import channel, extra_api
from tests.helpers import create_tenant, eventually, md

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def code_of(call) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def metric(api, name: str) -> float | None:
    """The one sample of an unlabelled gauge `name` on the extra api; None if absent."""
    url = f"http://127.0.0.1:{api.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


# -- a database outage ---------------------------------------------------------------------


def test_a_tenant_database_refusing_connections_is_unavailable_then_served_again(
    system, channels, settings, gateway
):
    """With the tenant's inventory database closed to new connections and its backends
    terminated, inventory answers UNAVAILABLE (never INTERNAL) and the gateway a 503 problem;
    once it accepts connections again both serve the same request, without a restart."""
    slug = unique("du")
    create_tenant(channels, slug)
    _, token = make_token(channels, slug, "api:read")
    assets = vgrpc.AssetServiceStub(channels["inventory"])
    asset = assets.CreateAsset(
        vpb.CreateAssetRequest(name="db", kind="hardware"), metadata=md(slug), timeout=10
    )

    def get():
        return assets.GetAsset(vpb.GetAssetRequest(id=asset.id), metadata=md(slug), timeout=10)

    path = f"/api/v1/assets/{asset.id}"
    assert get().id == asset.id
    assert gateway.call("GET", path, slug, token).status == 200  # positive control
    db = Names(settings.deployment, "inventory").tenant_database(slug)
    with Clusters(settings).admin_connect("main") as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(db))
        )
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,)
            )
            assert code_of(get) == grpc.StatusCode.UNAVAILABLE
            r = gateway.call("GET", path, slug, token)
            assert r.status == 503, r
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["status"] == 503
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(db))
            )
    assert get().id == asset.id
    assert gateway.call("GET", path, slug, token).status == 200


# -- pool exhaustion -----------------------------------------------------------------------

ACQUIRE_TIMEOUT = 3.0


def test_an_exhausted_pool_makes_callers_wait_up_to_the_acquire_timeout_then_unavailable(
    system, channels, settings
):
    """An inventory api with one connection in all (ONTRACK_POOL_MAX_PER_PROCESS=1): while
    tenant X's call holds it (blocked on a lock the test holds), a call for tenant Z waits;
    freed within the acquire timeout, Z is served; not freed, Z gets UNAVAILABLE after
    waiting the timeout (its own deadline is far longer)."""
    x, z = unique("px"), unique("pz")
    for slug in (x, z):
        create_tenant(channels, slug)
    x_db = Names(settings.deployment, "inventory").tenant_database(x)
    with (
        extra_api(
            system,
            "inventory",
            "inventory-api-pool",
            ONTRACK_POOL_MAX_PER_PROCESS="1",
            ONTRACK_POOL_MAX_PER_TENANT="1",
            ONTRACK_POOL_ACQUIRE_TIMEOUT=str(ACQUIRE_TIMEOUT),
        ) as api,
        channel(system, api) as ch,
        ThreadPoolExecutor(2) as calls,
    ):
        stub = vgrpc.AssetServiceStub(ch)

        def list_assets(slug):
            return stub.ListAssets(vpb.ListAssetsRequest(), metadata=md(slug), timeout=60)

        list_assets(x)  # X's connection is open (and idle): the whole budget
        assert metric(api, "ontrack_pool_connections") == 1

        def hold_x():
            """Lock X's assets table; return the lock and X's call, once it is blocked."""
            lock = Clusters(settings).admin_connect("main", x_db)
            lock.execute("BEGIN")
            lock.execute("LOCK TABLE assets IN ACCESS EXCLUSIVE MODE")
            blocked = calls.submit(list_assets, x)
            eventually(lambda: metric(api, "ontrack_pool_connections_in_use") == 1)
            return lock, blocked

        # Freed within the timeout: Z waits for the connection and is served.
        lock, blocked = hold_x()
        waiting = calls.submit(list_assets, z)
        eventually(lambda: metric(api, "ontrack_pool_tenants") == 2)  # Z's pool, waiting
        assert not waiting.done()
        lock.execute("ROLLBACK")
        lock.close()
        assert blocked.result(timeout=30) is not None
        assert waiting.result(timeout=30) is not None

        # Not freed: Z waits out the acquire timeout, then UNAVAILABLE.
        lock, blocked = hold_x()
        try:
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                list_assets(z)
            waited = time.monotonic() - start
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
        assert "no database connection available" in refused.value.details()
        assert waited >= ACQUIRE_TIMEOUT * 0.9  # a lower bound: it waited, it did not fail fast
        assert blocked.result(timeout=30) is not None
        assert list_assets(z) is not None  # and the api serves Z once the connection is free


# -- a broker outage -----------------------------------------------------------------------


class BrokerProxy:
    """A TCP relay in front of RabbitMQ that can be taken down: while down it cuts every
    connection it carries and closes each new one at once (counting them), as an unreachable
    broker would look to a client; up again, it carries new connections."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.refused = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if not self.up:
                    self.refused += 1
                    client.close()
                    continue
                upstream = socket.create_connection(self.target)
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def down(self) -> None:
        with self._lock:
            self.up, self.refused = False, 0
            cut, self._open = self._open, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        with self._lock:
            self.up = True

    def close(self) -> None:
        self.down()
        self.listener.close()


def via(url: str, port: int) -> str:
    """`url` with its host and port replaced by 127.0.0.1:`port` (credentials kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def test_events_written_while_the_broker_is_unreachable_are_delivered_when_it_returns(
    system, channels, settings
):
    """An identity api whose broker goes away (every connection cut, new ones closed): users
    created meanwhile are committed (writes never wait for the broker), their events stay in
    the outbox while the relay retries it every second, and once the broker is back the
    retry sweep publishes them, privacy applies them and the relay has nothing left unsent.
    The shared stack's processes keep their own broker connections throughout."""
    slug = unique("bo")
    create_tenant(channels, slug)
    url = settings.amqp_url.get_secret_value()
    parts = urlsplit(url)
    proxy = BrokerProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    identity_db = Names(settings.deployment, "identity").tenant_database(slug)
    privacy = privacy_pb2_grpc.DataSubjectServiceStub(channels["privacy"])

    def subject(user_id: str):
        return privacy.GetDataSubject(
            privacy_pb2.GetDataSubjectRequest(user_id=user_id), metadata=md(slug), timeout=5
        )

    def unpublished(ids: list[str]) -> int:
        with Clusters(settings).admin_connect("main", identity_db) as conn:
            return conn.execute(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                " AND payload->>'user_id' = ANY(%s)",
                (ids,),
            ).fetchone()[0]

    try:
        with (
            extra_api(
                system, "identity", "identity-api-broker", ONTRACK_AMQP_URL=via(url, proxy.port)
            ) as api,
            channel(system, api) as ch,
        ):
            users = igrpc.UserServiceStub(ch)

            def create(email: str) -> str:
                return users.CreateUser(
                    ipb.CreateUserRequest(email=email), metadata=md(slug), timeout=10
                ).id

            # Positive control: through the proxy, an event is delivered at once.
            first = create(f"before@{slug}.example")
            eventually(lambda: subject(first))

            proxy.down()
            during = [create(f"during{i}@{slug}.example") for i in range(3)]
            assert unpublished(during) == 3
            eventually(lambda: metric(api, "ontrack_relay_unsent_outboxes") == 1)
            eventually(lambda: proxy.refused >= 2)  # retried while down, more than once

            proxy.restore()
            eventually(lambda: unpublished(during) == 0)
            for user_id in during:
                eventually(lambda u=user_id: subject(u))
            eventually(lambda: metric(api, "ontrack_relay_unsent_outboxes") == 0)
    finally:
        proxy.close()
