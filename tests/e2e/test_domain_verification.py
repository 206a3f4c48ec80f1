"""End to end, through the gateway, against the real DNS server on loopback that the stack's
identity resolves with: a tenant adds a domain and gets its TXT challenge; until the record
is published (and right) verification is refused with a problem naming what was missing,
and the domain routes nowhere; once published it verifies, routes to the tenant and admits
its addresses; a domain another tenant verified is refused; a named collaborator is admitted
until the very moment the exception expires; every step is in both audit trails. SSO
sign-in itself (``signin.sso.complete``, which the SAML and OIDC flows call) is run on the
tenant's database to show the rule it applies is this one."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.tenancy import Names
from ontrackio.identity.errors import SignInRefused
from ontrackio.identity.signin import sso
from ontrackio.identity.signin.external import ExternalIdentity
from ontrackio.identity.v1 import domains_pb2 as dpb
from ontrackio.identity.v1 import domains_pb2_grpc as dgrpc
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.identity.v1 import sessions_pb2 as sspb
from ontrackio.identity.v1 import sessions_pb2_grpc as ssgrpc
from tests.conftest import unique
from tests.e2e.test_gateway_kit import gateway_fixture, make_token  # noqa: F401 - fixtures
from tests.helpers import create_tenant, eventually, md, ontrack

pytestmark = pytest.mark.e2e
PROBLEMS = "https://problems.ontrack.io/"


@pytest.fixture
def tenant(channels):
    """A new tenant and an admin token of it."""
    slug = unique("dv")
    create_tenant(channels, slug)
    _, token = make_token(channels, slug, "api:read", "admin")
    return slug, token


def admin(gateway, slug, token, method, path, body=None):
    return gateway.call(method, f"/admin/api/v1{path}", slug, token, body)


def routes_to(gateway, domain, token) -> int:
    return gateway.call(
        "GET", "/api/v1/assets", None, token, host=f"{domain}:{gateway.port}"
    ).status


def admission(gateway, slug, token, email):
    r = admin(gateway, slug, token, "POST", "/admission", {"email": email})
    assert r.status == 200, r
    return r.json()


def audit(gateway, slug, token, action):
    r = admin(gateway, slug, token, "GET", f"/audit?action={action}")
    assert r.status == 200, r
    return [(e["outcome"], e["target"]) for e in r.json()["items"]]


def control_audit(settings, slug, prefix="domain."):
    names = Names(settings.deployment, "identity")
    with Clusters(settings).admin_connect("main", names.control_database) as conn:
        return conn.execute(
            "SELECT e.action, e.outcome FROM audit.entries e JOIN tenants t"
            " ON e.target = 'tenant:' || t.id WHERE t.slug = %s AND e.action LIKE %s"
            " ORDER BY e.id",
            (slug, prefix + "%"),
        ).fetchall()


def test_challenge_publish_verify_then_the_domain_routes_and_admits(
    gateway, tenant, dns_server, settings
):
    slug, token = tenant
    domain = f"{slug}.example.com"
    added = admin(gateway, slug, token, "POST", "/domains", {"domain": f"{domain.upper()}."})
    assert added.status == 201, added
    d = added.json()
    assert d["domain"] == domain and d["verified"] is False
    challenge = d["challenge"]
    assert challenge["record_name"] == f"_ontrack-challenge.{domain}"
    assert challenge["record_type"] == "TXT"
    token_value = challenge["record_value"].removeprefix("ontrack-verify=")
    assert len(token_value) == 64 and int(token_value, 16) >= 0
    # Adding it again changes nothing (same challenge); another tenant's claim gets its own.
    again = admin(gateway, slug, token, "POST", "/domains", {"domain": domain})
    assert again.status == 201 and again.json()["challenge"] == challenge

    # Nothing published: refused, naming the name looked up; the domain routes nowhere.
    missing = admin(gateway, slug, token, "POST", f"/domains/{domain}/verify")
    assert missing.status == 422 and missing.json()["type"] == PROBLEMS + "domain-challenge-missing"
    assert f"_ontrack-challenge.{domain}" in missing.json()["detail"]
    assert "NXDOMAIN" in missing.json()["detail"]
    # A wrong value: refused, naming what was found.
    dns_server.txt(challenge["record_name"], "ontrack-verify=" + "0" * 64)
    wrong = admin(gateway, slug, token, "POST", f"/domains/{domain}/verify")
    assert wrong.status == 422
    assert wrong.json()["type"] == PROBLEMS + "domain-challenge-mismatch"
    assert "ontrack-verify=" + "0" * 64 in wrong.json()["detail"]
    listed = admin(gateway, slug, token, "GET", "/domains").json()["items"]
    assert [x["domain"] for x in listed] == [domain] and not listed[0]["verified"]
    assert "none of them" in listed[0]["last_check_result"]
    assert routes_to(gateway, domain, token) == 404
    assert admission(gateway, slug, token, f"alice@{domain}")["reason"] == "domain-not-allowed"

    # Published: verified; it routes (once the gateway's cached "unknown" expires) and admits.
    dns_server.txt(challenge["record_name"], "v=spf1 -all", challenge["record_value"])
    ok = admin(gateway, slug, token, "POST", f"/domains/{domain}/verify")
    assert ok.status == 200, ok
    assert ok.json()["verified"] is True and ok.json()["verified_by"].startswith("token:")
    assert ok.json()["last_check_result"] == ""
    eventually(lambda: routes_to(gateway, domain, token) == 200, timeout=30)
    verdict = admission(gateway, slug, token, f"Alice@{domain.upper()}")
    assert verdict == {
        "allowed": True,
        "reason": "domain-verified",
        "by_collaborator": False,
        "collaborator_id": None,
        "domain": domain,
    }
    # A subdomain is not the domain.
    sub = admission(gateway, slug, token, f"alice@sales.{domain}")
    assert sub["allowed"] is False and sub["reason"] == "domain-not-allowed"
    # Verifying again asks DNS nothing and succeeds, even with the record gone.
    dns_server.remove(challenge["record_name"])
    assert admin(gateway, slug, token, "POST", f"/domains/{domain}/verify").status == 200

    # Both trails: added, refused twice, verified.
    target = f"domain:{domain}"
    assert audit(gateway, slug, token, "domain.add") == [("done", target)]
    assert sorted(audit(gateway, slug, token, "domain.verify")) == sorted(
        [("refused", target), ("refused", target), ("done", target)]
    )
    assert control_audit(settings, slug) == [
        ("domain.add", "done"),
        ("domain.verify", "refused"),
        ("domain.verify", "refused"),
        ("domain.verify", "done"),
    ]

    # Removed: it stops admitting at once and routing once the cache expires.
    removed = admin(gateway, slug, token, "DELETE", f"/domains/{domain}")
    assert removed.status == 200 and removed.json()["verified"] is True
    assert admission(gateway, slug, token, f"alice@{domain}")["reason"] == "domain-not-allowed"
    eventually(lambda: routes_to(gateway, domain, token) == 404, timeout=30)
    assert admin(gateway, slug, token, "DELETE", f"/domains/{domain}").status == 404
    assert audit(gateway, slug, token, "domain.remove") == [("done", target)]
    assert control_audit(settings, slug)[-1] == ("domain.remove", "done")


def test_a_domain_another_tenant_verified_is_refused(gateway, channels, dns_server, system):
    a, b = unique("da"), unique("db")
    for slug in (a, b):
        create_tenant(channels, slug)
    _, token_a = make_token(channels, a, "api:read", "admin")
    _, token_b = make_token(channels, b, "api:read", "admin")
    domain = f"{a}.example.org"

    # Both claim it: each gets a challenge of its own, so neither record verifies the other.
    ca = admin(gateway, a, token_a, "POST", "/domains", {"domain": domain}).json()["challenge"]
    cb = admin(gateway, b, token_b, "POST", "/domains", {"domain": domain}).json()["challenge"]
    assert ca["record_name"] == cb["record_name"] and ca["record_value"] != cb["record_value"]
    dns_server.txt(ca["record_name"], ca["record_value"])
    refused = admin(gateway, b, token_b, "POST", f"/domains/{domain}/verify")
    assert refused.status == 422 and refused.json()["type"].endswith("domain-challenge-mismatch")
    assert admin(gateway, a, token_a, "POST", f"/domains/{domain}/verify").status == 200

    # Now it is a's: b can neither verify its claim (even with its own record published) nor
    # add the name again, and the operator's path refuses it too.
    dns_server.txt(ca["record_name"], ca["record_value"], cb["record_value"])
    taken = admin(gateway, b, token_b, "POST", f"/domains/{domain}/verify")
    assert taken.status == 409 and "another tenant" in taken.json()["detail"]
    assert admin(gateway, b, token_b, "POST", "/domains", {"domain": domain}).status == 409
    other = f"www.{domain}"
    assert admin(gateway, b, token_b, "POST", "/domains", {"domain": other}).status == 201
    r = ontrack(system, "tenant", "domain", "verify", b, domain)
    assert r.returncode == 2 and "another tenant" in r.stderr
    # b's refusals: the mismatch, then the taken domain (the re-add is refused before any
    # claim exists, so it records nothing).
    assert audit(gateway, b, token_b, "domain.verify") == [("refused", f"domain:{domain}")] * 2
    # The domain routes to a, and admits a's addresses only.
    eventually(lambda: routes_to(gateway, domain, token_a) == 200, timeout=30)
    assert routes_to(gateway, domain, token_b) == 401  # a's host: b's token is unknown there
    assert admission(gateway, b, token_b, f"x@{domain}")["reason"] == "domain-not-allowed"
    assert admission(gateway, a, token_a, f"x@{domain}")["reason"] == "domain-verified"

    # Once a removes it, b may verify its own claim.
    assert admin(gateway, a, token_a, "DELETE", f"/domains/{domain}").status == 200
    assert admin(gateway, b, token_b, "POST", f"/domains/{domain}/verify").status == 200


def test_hostile_domain_names_are_400s_never_500s(gateway, tenant, channels):
    slug, token = tenant
    for text in ["", "localhost", "a..b.com", "a_b.example.com", "x" * 1024, "*.example.com"]:
        r = admin(gateway, slug, token, "POST", "/domains", {"domain": text})
        assert r.status == 400 and r.json()["status"] == 400, (text, r)
    nul = admin(gateway, slug, token, "POST", "/domains", {"domain": "example.com\u0000"})
    assert nul.status == 400
    for path in ["/domains/a_b.com/verify", "/domains/%00.com/verify", "/domains/..%2f/verify"]:
        assert admin(gateway, slug, token, "POST", path).status == 400, path
    assert admin(gateway, slug, token, "POST", "/domains/nope.example/verify").status == 404
    stub = dgrpc.DomainServiceStub(channels["identity"])
    with pytest.raises(grpc.RpcError) as info:
        stub.AddDomain(dpb.AddDomainRequest(domain="a.com\x00"), metadata=md(slug), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_collaborator_is_admitted_until_the_exception_expires_at_once(gateway, tenant):
    slug, token = tenant
    address = f"Guest.{slug}@Partner.example"
    expires = datetime.now(UTC) + timedelta(seconds=4)
    added = admin(
        gateway,
        slug,
        token,
        "POST",
        "/collaborators",
        {"address": address, "reason": "external audit", "expires_at": expires.isoformat()},
    )
    assert added.status == 201, added
    x = added.json()
    assert x["address"] == address and x["active"] is True and x["approver"].startswith("token:")

    verdict = admission(gateway, slug, token, address.lower())
    assert verdict["allowed"] is True and verdict["reason"] == "named-collaborator"
    assert verdict["by_collaborator"] is True and verdict["collaborator_id"] == x["id"]
    stranger = admission(gateway, slug, token, f"other.{slug}@partner.example")
    assert stranger["reason"] == "domain-not-allowed"

    # The moment it expires, it stops admitting: no sweep runs in between.
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    gone = admission(gateway, slug, token, address)
    assert gone["allowed"] is False and gone["reason"] == "collaborator-expired"
    listed = admin(gateway, slug, token, "GET", "/collaborators").json()["items"]
    assert listed == []
    everything = admin(gateway, slug, token, "GET", "/collaborators?include_expired=true")
    [shown] = everything.json()["items"]
    assert shown["id"] == x["id"] and shown["active"] is False

    # Renewed by a new approval (it replaces the old one), then removed: refused at once.
    renewed = admin(
        gateway,
        slug,
        token,
        "POST",
        "/collaborators",
        {
            "address": address.upper(),
            "reason": "audit extended",
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
    )
    assert renewed.status == 201 and renewed.json()["id"] != x["id"]
    assert admission(gateway, slug, token, address)["allowed"] is True
    assert admin(gateway, slug, token, "DELETE", f"/collaborators/{x['id']}").status == 404
    removed = admin(gateway, slug, token, "DELETE", f"/collaborators/{renewed.json()['id']}")
    assert removed.status == 200
    assert admission(gateway, slug, token, address)["reason"] == "domain-not-allowed"

    r = admin(gateway, slug, token, "GET", "/audit?action=collaborator.add")
    adds = r.json()["items"]
    assert len(adds) == 2 and all(e["target"].startswith("collaborator:") for e in adds)
    # The address is a personal value in the trail, never inline.
    assert address not in json.dumps(adds) and address.upper() not in json.dumps(adds)
    assert audit(gateway, slug, token, "collaborator.remove") == [
        ("done", f"collaborator:{renewed.json()['id']}")
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"address": "g@partner.example", "reason": "r", "expires_at": "2020-01-01T00:00:00Z"},
        {"address": "g@partner.example", "reason": "r", "expires_at": "2999-01-01T00:00:00Z"},
        {"address": "not-an-address", "reason": "r", "expires_at": "2999-01-01T00:00:00Z"},
        {
            "address": "g@partner.example",
            "reason": "a\u0007b",
            "expires_at": "2999-01-01T00:00:00Z",
        },
    ],
)
def test_an_exception_without_a_bounded_future_expiry_or_a_real_address_is_refused(
    gateway, tenant, body
):
    slug, token = tenant
    r = admin(gateway, slug, token, "POST", "/collaborators", body)
    assert r.status == 400 and r.json()["status"] == 400, r
    assert (
        admin(gateway, slug, token, "GET", "/audit?action=collaborator.add").json()["items"] == []
    )


def _sso_sign_in(settings, slug, email, verified_domains):
    """``signin.sso.complete`` (what the SAML and OIDC flows call once the IdP's response is
    checked) on the tenant's identity database, as the identity api would run it."""
    ext = ExternalIdentity(
        method="saml", issuer=f"https://idp.{slug}.example", subject=f"sub-{email}", email=email
    )
    key = settings.token_hash_key.get_secret_value().encode()
    conninfo = Clusters(settings).tenant_conninfo("identity", slug, "main")
    with psycopg.connect(conninfo) as conn, conn.transaction():
        u = UnitOfWork(conn, slug, DEPLOYMENT.events)
        return sso.complete(u, key, ext, verified_domains=verified_domains)


def test_sso_sign_in_admits_by_verified_domain_and_named_collaborator_only(
    gateway, tenant, channels, system, dns_server, settings
):
    slug, token = tenant
    domain = f"{slug}.example.net"
    ssgrpc.SessionServiceStub(system.channel("identity", "cli")).SetSignInPolicy(
        sspb.SignInPolicy(jit_provisioning=True),
        metadata=(*md(slug), ("x-ontrack-actor", "cli:e2e")),
        timeout=10,
    )
    challenge = admin(gateway, slug, token, "POST", "/domains", {"domain": domain}).json()
    dns_server.txt(challenge["challenge"]["record_name"], challenge["challenge"]["record_value"])
    assert admin(gateway, slug, token, "POST", f"/domains/{domain}/verify").status == 200
    verified = list(
        igrpc.TenantServiceStub(channels["identity"])
        .GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5)
        .domains
    )
    assert verified == [domain]

    assert _sso_sign_in(settings, slug, f"alice@{domain}", verified).session_id
    for email, why in [
        (f"eve@sales.{domain}", "domain-not-allowed"),
        (f"guest@partner-{slug}.example", "domain-not-allowed"),
        ("eve@ｅｘａｍｐｌｅ.net", "email-invalid"),
    ]:
        with pytest.raises(SignInRefused) as refused:
            _sso_sign_in(settings, slug, email, verified)
        assert refused.value.why == why, email

    guest = f"Guest@Partner-{slug}.example"
    expires = datetime.now(UTC) + timedelta(seconds=3)
    body = {"address": guest, "reason": "partner audit", "expires_at": expires.isoformat()}
    assert admin(gateway, slug, token, "POST", "/collaborators", body).status == 201
    assert _sso_sign_in(settings, slug, guest.lower(), verified).session_id
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    with pytest.raises(SignInRefused) as expired:
        _sso_sign_in(settings, slug, guest.lower(), verified)
    assert expired.value.why == "collaborator-expired"
