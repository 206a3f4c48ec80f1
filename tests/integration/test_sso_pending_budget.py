"""The pending SSO login budget (identity/sso/pending.py) on a tenant's real database and
through the running system: one client's flood of the public login endpoint is refused to
that client alone; past the tenant's cap the oldest pending logins are evicted, nobody is
refused; expired rows are swept."""

from __future__ import annotations

import grpc
import psycopg
import pytest

from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.grpcclient import tenant as tenant_md
from ontrackio.core.tenancy import Names
from ontrackio.devtools.samlidp import EMAIL_ATTRIBUTE, SamlIdP
from ontrackio.identity.errors import TooManyPendingLogins
from ontrackio.identity.sso import pending
from ontrackio.identity.v1 import saml_pb2 as pb
from ontrackio.identity.v1 import saml_pb2_grpc as sgrpc
from tests.conftest import unique
from tests.helpers import create_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tenant(channels):
    slug = unique("pb")
    create_tenant(channels, slug)
    return slug


def _conn(settings, slug):
    db = Names(settings.deployment, "identity").tenant_database(slug)
    return psycopg.connect(settings.pg_dsn("main"), dbname=db, autocommit=True)


def _add(u, client: str, request_id: str, *, expired: bool = False) -> None:
    u.conn.execute(
        "INSERT INTO saml_requests (id, next, expires_at, client_key)"
        " VALUES (%s, '/', now() + %s::interval, %s)",
        (request_id, "-1 minute" if expired else "10 minutes", client),
    )


def test_the_budget_refuses_one_client_evicts_the_oldest_and_sweeps(settings, tenant):
    budget = pending.Budget(per_client=3, per_tenant=5)
    with _conn(settings, tenant) as conn:
        conn.execute("DELETE FROM saml_requests")
        u = UnitOfWork(conn, tenant)
        for i in range(3):
            pending.make_room(u, "saml_requests", "198.51.100.1", budget)
            _add(u, "198.51.100.1", f"a{i}")
        with pytest.raises(TooManyPendingLogins):
            pending.make_room(u, "saml_requests", "198.51.100.1", budget)
        # other clients are not affected, and past the tenant's cap the oldest rows go
        for client, request_id in [("198.51.100.2", "b0"), ("198.51.100.2", "b1")]:
            pending.make_room(u, "saml_requests", client, budget)
            _add(u, client, request_id)
        pending.make_room(u, "saml_requests", "198.51.100.3", budget)
        _add(u, "198.51.100.3", "c0")
        ids = [r[0] for r in conn.execute("SELECT id FROM saml_requests ORDER BY created_at, id")]
        assert ids == ["a1", "a2", "b0", "b1", "c0"]
        # expired rows are swept and no longer count against their client
        conn.execute("UPDATE saml_requests SET expires_at = now() - interval '1 second'")
        pending.make_room(u, "saml_requests", "198.51.100.1", budget)
        assert conn.execute("SELECT count(*) FROM saml_requests").fetchone()[0] == 0


def test_a_flood_from_one_address_is_refused_to_it_alone(system, settings, channels, tenant):
    idp = SamlIdP("https://idp.budget.test/metadata")
    admin = system.channel("identity", "cli")
    edge = system.channel("identity", "gateway")
    try:
        sgrpc.SamlServiceStub(admin).SetSamlConfig(
            pb.SetSamlConfigRequest(
                config=pb.SamlConfig(
                    idp_entity_id=idp.entity_id,
                    sso_url=idp.sso_url,
                    certificates=[idp.signer.cert_pem],
                    email_attribute=EMAIL_ATTRIBUTE,
                )
            ),
            metadata=(*tenant_md(tenant), ("x-ontrack-actor", "cli:budget-test")),
            timeout=10,
        )
        stub = sgrpc.SamlServiceStub(edge)

        def start(address: str):
            return stub.StartLogin(
                pb.StartLoginRequest(
                    canonical_origin=f"https://{tenant}.ontrack.test",
                    next="/",
                    client_address=address,
                ),
                metadata=tenant_md(tenant),
                timeout=10,
            )

        per_client = settings.sso_pending_logins_per_client
        for _ in range(per_client):
            start("2001:db8:1:2::7")
        with pytest.raises(grpc.RpcError) as info:
            start("2001:db8:1:2::99")  # the same /64
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert start("2001:db8:1:3::7").request_id  # another /64 still signs in
        assert start("203.0.113.9").request_id
    finally:
        admin.close()
        edge.close()
        idp.close()


def test_a_purpose_scopes_the_budget_so_anonymous_rows_never_evict_others(settings, tenant):
    """mfa_challenges holds anonymous passwordless challenges beside signed-in users'
    registration and step-up ones: with ``purpose`` the budgets count and evict only the
    anonymous ones."""
    budget = pending.Budget(per_client=2, per_tenant=3)
    with _conn(settings, tenant) as conn:
        conn.execute("DELETE FROM mfa_challenges")
        u = UnitOfWork(conn, tenant)

        def add(purpose: str, client: str) -> None:
            conn.execute(
                "INSERT INTO mfa_challenges (id, purpose, challenge, client_key, expires_at)"
                " VALUES (gen_random_uuid(), %s, '\\x00', %s, now() + interval '5 minutes')",
                (purpose, client),
            )

        for _ in range(5):  # a signed-in user's challenges, more than the tenant's budget
            add("step_up", "")
        add("register", "198.51.100.9")  # from the same address as the flood below
        add("register", "198.51.100.9")
        for i in range(6):
            client = f"198.51.100.{i % 3 + 1}"
            pending.make_room(u, "mfa_challenges", client, budget, purpose="sign_in")
            add("sign_in", client)
        pending.make_room(u, "mfa_challenges", "198.51.100.9", budget, purpose="sign_in")
        counts = dict(conn.execute("SELECT purpose, count(*) FROM mfa_challenges GROUP BY purpose"))
        assert counts == {"step_up": 5, "register": 2, "sign_in": 2}
        # Without the purpose, the same call would have evicted the users' rows.
        pending.make_room(u, "mfa_challenges", "198.51.100.8", budget)
        assert conn.execute("SELECT count(*) FROM mfa_challenges").fetchone()[0] == 2
        conn.execute("DELETE FROM mfa_challenges")
