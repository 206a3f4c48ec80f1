"""The audit trail in the running system: identity's entries and refusals, ListAudit, the
worker's anchors, `ontrack audit verify` (intact, then tampered as the superuser), and the
gateway's audit operation and refusal reports through the running gateway."""

from __future__ import annotations

import json
import time

import grpc
import psycopg
import pytest

from ontrackio.core.db.clusters import Clusters
from ontrackio.core.tenancy import Names
from ontrackio.identity.v1 import access_pb2 as apb
from ontrackio.identity.v1 import access_pb2_grpc as agrpc
from ontrackio.identity.v1 import audit_pb2 as pb
from ontrackio.identity.v1 import audit_pb2_grpc as pb_grpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import gateway_fixture, make_token  # noqa: F401 - fixture
from tests.helpers import create_tenant, eventually, md, ontrack


def meta(slug: str, **extra: str):
    return (*md(slug), *extra.items())


@pytest.fixture(scope="module")
def tenant(channels) -> str:
    slug = unique("ad")
    create_tenant(channels, slug)
    return slug


@pytest.fixture(scope="module")
def audit_stub(channels):
    return pb_grpc.AuditServiceStub(channels["identity"])


@pytest.fixture(scope="module")
def edge_stub(system):
    """AuditService as the gateway calls it (only the gateway may report its refusals)."""
    channel = system.channel("identity", "gateway")
    yield pb_grpc.AuditServiceStub(channel)
    channel.close()


def test_only_the_gateway_may_report_refusals(tenant, audit_stub):
    with pytest.raises(grpc.RpcError) as info:
        audit_stub.RecordRefusal(
            pb.RecordRefusalRequest(action="scope.denied"), metadata=md(tenant)
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _token(channels, slug: str, request_id: str = "") -> str:
    extra = {"x-ontrack-actor": "cli:erin"}
    if request_id:
        extra["x-ontrack-request-id"] = request_id
        extra["x-ontrack-client-address"] = "203.0.113.9"
        extra["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = agrpc.AccessServiceStub(channels["identity"]).CreateToken(
        apb.CreateTokenRequest(name="audit", scopes=["admin"]), metadata=meta(slug, **extra)
    )
    return r.token.id


def test_changes_and_refusals_are_listed_with_their_origin(channels, tenant, audit_stub, edge_stub):
    token_id = _token(channels, tenant, request_id="req-42")
    access = agrpc.AccessServiceStub(channels["identity"])
    with pytest.raises(grpc.RpcError) as refused:
        access.SetAllowlist(
            apb.SetAllowlistRequest(cidrs=["192.0.2.0/24"], caller_address="198.51.100.1"),
            metadata=meta(tenant, **{"x-ontrack-actor": f"token:{token_id}"}),
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    got = edge_stub.RecordRefusal(
        pb.RecordRefusalRequest(
            action="scope.denied",
            actor=f"token:{token_id}",
            target="GET /admin/api/v1/tokens",
            reason="scope admin required",
        ),
        metadata=meta(tenant, **{"x-ontrack-client-address": "198.51.100.2"}),
    )
    assert got.recorded
    entries = audit_stub.ListAudit(pb.ListAuditRequest(), metadata=md(tenant)).entries
    by_action = {e.action: e for e in entries}
    created = by_action["token.create"]
    assert created.actor.startswith("pv:") and created.actor_display == "cli:erin"
    assert created.target == f"token:{token_id}" and created.outcome == "done"
    assert (created.request_id, created.client_address, created.trace_id) == (
        "req-42",
        "203.0.113.9",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    )
    assert "secret" not in created.new_json and json.loads(created.new_json)["scopes"] == ["admin"]
    lockout = by_action["allowlist.lockout_refused"]
    assert lockout.outcome == "refused" and lockout.client_address == "198.51.100.1"
    scope = by_action["scope.denied"]
    assert scope.outcome == "refused" and scope.client_address == "198.51.100.2"
    assert json.loads(scope.new_json) == {"reason": "scope admin required"}
    # Filters and pages.
    only = audit_stub.ListAudit(
        pb.ListAuditRequest(action="scope.denied"), metadata=md(tenant)
    ).entries
    assert [e.action for e in only] == ["scope.denied"]
    mine = audit_stub.ListAudit(pb.ListAuditRequest(actor="cli:erin"), metadata=md(tenant))
    assert {e.action for e in mine.entries} == {"token.create"}
    first = audit_stub.ListAudit(pb.ListAuditRequest(page_size=1), metadata=md(tenant))
    second = audit_stub.ListAudit(
        pb.ListAuditRequest(page_size=1, page_token=first.next_page_token), metadata=md(tenant)
    )
    assert first.next_page_token and second.entries[0].id < first.entries[0].id
    later = pb.ListAuditRequest()
    later.since.FromJsonString("2999-01-01T00:00:00Z")
    assert not audit_stub.ListAudit(later, metadata=md(tenant)).entries


@pytest.mark.parametrize(
    "request_",
    [
        pb.ListAuditRequest(page_token="not-a-token"),
        pb.ListAuditRequest(action="x"),
        pb.ListAuditRequest(page_size=501),
        pb.ListAuditRequest(actor="a\x00"),
    ],
)
def test_bad_list_requests_are_invalid_arguments(tenant, audit_stub, request_):
    with pytest.raises(grpc.RpcError) as exc:
        audit_stub.ListAudit(request_, metadata=md(tenant))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_refusal_reports_are_validated_and_rate_limited(channels, audit_stub, edge_stub):
    slug = unique("ar")
    create_tenant(channels, slug)
    for bad in (
        pb.RecordRefusalRequest(action="token.create"),
        pb.RecordRefusalRequest(action="scope.denied", actor="mallory@example.eu"),
    ):
        with pytest.raises(grpc.RpcError) as exc:
            edge_stub.RecordRefusal(bad, metadata=md(slug))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    started = time.monotonic()
    flood = [
        edge_stub.RecordRefusal(
            pb.RecordRefusalRequest(action="allowlist.denied", target="x" * 5000),
            metadata=md(slug),
        ).recorded
        for _ in range(120)
    ]
    elapsed = time.monotonic() - started
    # The burst (50), then the rate (5/s): whatever refilled while the flood ran, no more.
    # (Whether the very last report fell on a refill is timing, not behaviour.)
    assert 40 <= sum(flood) <= 50 + 5 * elapsed + 1, (sum(flood), elapsed)
    assert not all(flood[50:])
    listed = audit_stub.ListAudit(pb.ListAuditRequest(page_size=500), metadata=md(slug))
    refusals = [e for e in listed.entries if e.action == "allowlist.denied"]
    assert len(refusals) == sum(flood) and all(len(e.target) <= 200 for e in refusals)
    assert all(e.actor == "anonymous" for e in refusals)


def _anchors(settings, slug: str) -> dict[str, int]:
    names = Names(settings.deployment, "identity")
    with Clusters(settings).admin_connect("main", names.control_database) as conn:
        rows = conn.execute(
            "SELECT a.service, max(a.seq) FROM audit.anchors a JOIN tenants t"
            " ON t.id = a.tenant_id WHERE t.slug = %s GROUP BY a.service",
            (slug,),
        ).fetchall()
    return dict(rows)


def test_worker_anchors_heads_and_verify_finds_tampering(system, channels, settings):
    slug = unique("av")
    create_tenant(channels, slug)
    for _ in range(3):
        _token(channels, slug)
    anchored = eventually(lambda: _anchors(settings, slug).get("identity", 0) >= 3, timeout=30)
    assert anchored
    ok = ontrack(system, "audit", "verify", "--tenant", slug)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    identity_db = Names(settings.deployment, "identity").tenant_database(slug)
    [row] = [d for d in report["databases"] if d["database"] == identity_db]
    assert row["ok"] and row["entries"] >= 3 and row["anchored_seq"] >= 3
    everything = ontrack(system, "audit", "verify")
    assert everything.returncode == 0, everything.stderr
    control_db = Names(settings.deployment, "identity").control_database
    assert control_db in {d["database"] for d in json.loads(everything.stdout)["databases"]}

    with Clusters(settings).admin_connect("main", identity_db) as su:
        su.execute(
            "UPDATE audit.entries SET new_value = '{}'"
            " WHERE id = (SELECT entry_id FROM audit.seals WHERE seq = 2)"
        )
    changed = ontrack(system, "audit", "verify", "--tenant", slug)
    assert changed.returncode == 1
    assert f"{identity_db} seq 2: hash mismatch" in changed.stderr

    with Clusters(settings).admin_connect("main", identity_db) as su:
        su.execute("TRUNCATE audit.entries, audit.seals")
    cut = ontrack(system, "audit", "verify", "--tenant", slug)
    assert cut.returncode == 1 and f"{identity_db} seq 1:" in cut.stderr
    assert "anchored at seq" in cut.stderr

    unknown = ontrack(system, "audit", "verify", "--tenant", unique("nx"))
    assert unknown.returncode == 2


def test_gateway_lists_the_trail_as_json_and_csv_and_records_its_refusals(gateway, channels):
    """Through the running gateway: GET /admin/api/v1/audit pages (JSON, CSV), a bad time is a
    400, and the refusals the gateway decides (missing scope, allowlist) become entries."""
    slug = unique("ag")
    create_tenant(channels, slug)
    _, admin = make_token(channels, slug, "admin", "api:read")  # may mint api:read tokens
    _, reader = make_token(channels, slug, "api:read")
    for _ in range(3):
        make_token(channels, slug, "api:read")
    page = gateway.call("GET", "/admin/api/v1/audit?page_size=2", slug, admin)
    assert page.status == 200, page.body
    items, cursor = page.json()["items"], page.json()["next_page_token"]
    assert len(items) == 2 and cursor
    assert items[0]["id"] > items[1]["id"]
    nxt = gateway.call("GET", f"/admin/api/v1/audit?page_size=2&page_token={cursor}", slug, admin)
    assert nxt.status == 200 and nxt.json()["items"][0]["id"] < items[1]["id"]
    as_csv = gateway.call(
        "GET",
        "/admin/api/v1/audit?action=token.create",
        slug,
        admin,
        headers=[("Accept", "text/csv")],
    )
    assert as_csv.status == 200 and as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.body.decode().splitlines()
    assert lines[0].startswith("id,seq,at,actor") and len(lines) >= 6
    assert all("token.create" in line for line in lines[1:])
    bad = gateway.call("GET", "/admin/api/v1/audit?since=2026-02-30T00:00:00Z", slug, admin)
    assert bad.status == 400

    def refused(action: str, source: str):
        r = gateway.call("GET", f"/admin/api/v1/audit?action={action}", slug, admin, source=source)
        return [e for e in r.json()["items"] if e["outcome"] == "refused"]

    inside, outside = "127.0.77.5", "127.0.78.5"
    # A change made through the gateway names the request (its X-Request-Id) and the client.
    made = gateway.call(
        "POST", "/admin/api/v1/tokens", slug, admin, {"scopes": ["api:read"]}, source=inside
    )
    assert made.status == 201, made.body
    rid = made.headers["x-request-id"]
    created = gateway.call("GET", "/admin/api/v1/audit?action=token.create", slug, admin).json()
    mine = [e for e in created["items"] if e["request_id"] == rid]
    assert len(mine) == 1 and mine[0]["client_address"] == inside
    assert mine[0]["target"] == f"token:{made.json()['token']['id']}"
    assert refused("scope.denied", inside) == [] and refused("allowlist.denied", inside) == []
    assert gateway.call("GET", "/admin/api/v1/tokens", slug, reader, source=inside).status == 403
    scope = eventually(lambda: refused("scope.denied", inside), timeout=10)
    assert scope[0]["target"] == "GET /admin/api/v1/tokens"
    assert scope[0]["client_address"] == inside and len(scope[0]["request_id"]) == 32
    ok = gateway.call(
        "PUT", "/admin/api/v1/allowlist", slug, admin, {"cidrs": ["127.0.77.0/24"]}, source=inside
    )
    assert ok.status == 200, ok.body
    denied = eventually(
        lambda: (
            gateway.call("GET", "/admin/api/v1/tokens", slug, admin, source=outside).status == 403
        ),
        timeout=5,
    )
    assert denied
    entries = eventually(lambda: refused("allowlist.denied", inside), timeout=10)
    assert entries[0]["client_address"] == outside
    assert entries[0]["target"] == "GET /admin/api/v1/tokens"


def test_pseudonymised_actor_keeps_the_chain_verifying(system, channels, settings):
    slug = unique("ap")
    create_tenant(channels, slug)
    _token(channels, slug)
    identity_db = Names(settings.deployment, "identity").tenant_database(slug)
    conninfo = Clusters(settings).tenant_conninfo("identity", slug, "main")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        ref = conn.execute(
            "SELECT actor FROM audit.entries WHERE action = 'token.create'"
        ).fetchone()[0]
        assert conn.execute("SELECT audit.pseudonymise(substr(%s, 4)::uuid)", (ref,)).fetchone()[0]
    entries = (
        pb_grpc.AuditServiceStub(channels["identity"])
        .ListAudit(pb.ListAuditRequest(), metadata=md(slug))
        .entries
    )
    assert entries[0].actor_display.startswith("pseudonym-")
    eventually(lambda: _anchors(settings, slug).get("identity", 0) >= 1, timeout=30)
    ok = ontrack(system, "audit", "verify", "--tenant", slug)
    assert ok.returncode == 0, ok.stderr
    assert any(
        d["database"] == identity_db and d["entries"] >= 1
        for d in json.loads(ok.stdout)["databases"]
    )
