"""The domains and collaborators admin operations (gateway/api/domains.py, collaborators.py)
behind the real router and endpoint wrapper, with identity played by a recording fake:
what each forwards, how it answers, and the problems a refused verification becomes
(422 of its own type for a missing or wrong record, 503 with Retry-After when DNS is
unavailable, 409 for a domain another tenant verified), never a 500."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.gateway.api import collaborators, domains
from ontrackio.gateway.openapi import Invalid, document, validate
from ontrackio.gateway.problems import REASONS
from ontrackio.identity.v1 import domains_pb2 as pb
from tests.unit.gateway.api_kit import INSIDE, tiny_app
from tests.unit.gateway.strategies import PROPERTY

ADMIN = [("Authorization", "Bearer admin")]
JSON = ("Content-Type", "application/json")


class Stub:
    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, method: str) -> str:
        return f"{self.name}.{method}"


class FakeIdentity:
    """Answers each method with a canned reply or raises a canned error; records calls."""

    def __init__(self, **answers) -> None:
        self.upstream = SimpleNamespace(domains=Stub("domains"), collaborators=Stub("collab"))
        self.answers = answers
        self.calls: list[tuple[str, object, str | None]] = []

    async def rpc(self, call, method, request):
        self.calls.append((method, request, call.actor))
        answer = self.answers[method.split(".")[1]]
        if isinstance(answer, Exception):
            raise answer
        return answer


def refusal(code, details, reason=None):
    trailing = grpc.aio.Metadata(*([("ontrack-reason", reason)] if reason else []))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details)


def ts(text: str) -> Timestamp:
    t = Timestamp()
    t.FromJsonString(text)
    return t


PENDING = pb.Domain(
    domain="xn--bcher-kva.example",
    display_name="bücher.example",
    verified=False,
    challenge=pb.DomainChallenge(
        record_name="_ontrack-challenge.xn--bcher-kva.example",
        record_type="TXT",
        record_value="ontrack-verify=" + "ab" * 32,
    ),
    added_at=ts("2026-03-01T12:00:00Z"),
    added_by="token:t-admin",
)
GUEST = pb.Collaborator(
    id="7d0c8a4e-3f5b-4c0e-9b8e-2a7f1c6d5e4f",
    address="Guest@Partner.org",
    reason="audit by partner",
    expires_at=ts("2026-04-01T00:00:00Z"),
    approver="token:t-admin",
    created_at=ts("2026-03-01T12:00:00Z"),
    active=True,
)


def app(identity):
    return tiny_app([*domains.OPERATIONS, *collaborators.OPERATIONS], services=identity)


def post(asgi, a, path, body):
    return asgi(
        a,
        path,
        method="POST",
        headers=[*ADMIN, JSON],
        body=(json.dumps(body).encode(),),
        client=INSIDE,
    )


def test_adding_a_domain_forwards_it_and_answers_the_challenge(asgi):
    identity = FakeIdentity(AddDomain=PENDING)
    r = post(asgi, app(identity), "/admin/api/v1/domains", {"domain": "Bücher.example."})
    assert r.status == 201, r.body
    body = r.json()
    assert body["domain"] == "xn--bcher-kva.example" and body["verified"] is False
    assert body["challenge"] == {
        "record_name": "_ontrack-challenge.xn--bcher-kva.example",
        "record_type": "TXT",
        "record_value": "ontrack-verify=" + "ab" * 32,
    }
    assert body["verified_at"] is None and body["added_at"] == "2026-03-01T12:00:00Z"
    method, request, actor = identity.calls[0]
    assert method == "domains.AddDomain" and request.domain == "Bücher.example."
    assert actor == "token:t-admin"
    validate(body, domains.DOMAIN)


@pytest.mark.parametrize(
    "reason, status, title",
    [
        ("domain-challenge-missing", 422, "DNS challenge not found"),
        ("domain-challenge-mismatch", 422, "DNS challenge does not match"),
        ("domain-dns-unavailable", 503, "DNS unavailable"),
    ],
)
def test_a_refused_verification_is_a_problem_of_its_own_type(asgi, reason, status, title):
    detail = "no TXT record found: the name _ontrack-challenge.x.example does not exist"
    identity = FakeIdentity(
        CheckDomain=refusal(grpc.StatusCode.FAILED_PRECONDITION, detail, reason)
    )
    r = asgi(
        app(identity),
        "/admin/api/v1/domains/x.example/verify",
        method="POST",
        headers=ADMIN,
        client=INSIDE,
    )
    assert r.status == status and r.is_problem
    body = r.json()
    assert body["type"] == REASONS[reason].type_ and body["title"] == title
    assert body["detail"] == detail
    assert (r.header("retry-after") is not None) is (status == 503)
    assert identity.calls[0][1].domain == "x.example"


def test_a_domain_another_tenant_verified_is_a_409(asgi):
    taken = refusal(grpc.StatusCode.ALREADY_EXISTS, "domain 'x.example' is verified by another")
    r = post(asgi, app(FakeIdentity(AddDomain=taken)), "/admin/api/v1/domains", {"domain": "x"})
    assert r.status == 409 and r.is_problem and "another" in r.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/api/v1/domains/b%C3%BCcher.example/verify",  # Unicode: use the A-labels
        "/admin/api/v1/domains/a_b.example/verify",
        "/admin/api/v1/domains/" + "a" * 255 + "/verify",
    ],
)
def test_a_path_domain_outside_the_pattern_is_refused_before_identity(asgi, path):
    identity = FakeIdentity()
    r = asgi(app(identity), path, method="POST", headers=ADMIN, client=INSIDE)
    assert r.status == 400 and r.is_problem and identity.calls == []


def test_removing_and_listing_domains(asgi):
    identity = FakeIdentity(RemoveDomain=PENDING, ListDomains=pb.ListDomainsResponse(domains=[]))
    a = app(identity)
    r = asgi(a, "/admin/api/v1/domains/x.example", method="DELETE", headers=ADMIN, client=INSIDE)
    assert r.status == 200 and r.json()["domain"] == "xn--bcher-kva.example"
    assert asgi(a, "/admin/api/v1/domains", headers=ADMIN, client=INSIDE).json() == {"items": []}


def test_adding_a_collaborator_forwards_the_expiry_as_a_timestamp(asgi):
    identity = FakeIdentity(AddCollaborator=GUEST)
    body = {
        "address": "Guest@Partner.org",
        "reason": "audit by partner",
        "expires_at": "2026-04-01T02:00:00+02:00",
    }
    r = post(asgi, app(identity), "/admin/api/v1/collaborators", body)
    assert r.status == 201, r.body
    assert r.json()["expires_at"] == "2026-04-01T00:00:00Z" and r.json()["active"] is True
    request = identity.calls[0][1]
    assert request.expires_at.ToJsonString() == "2026-04-01T00:00:00Z"
    assert request.address == "Guest@Partner.org" and request.reason == "audit by partner"
    validate(r.json(), collaborators.COLLABORATOR)


@pytest.mark.parametrize(
    "body",
    [
        {"address": "g@p.org", "reason": "r"},  # expiry required
        {"address": "g@p.org", "reason": "r", "expires_at": "2026-13-01T00:00:00Z"},
        {"address": "g@p.org", "reason": "r", "expires_at": "tomorrow"},
        {"address": "g@p.org", "reason": "", "expires_at": "2026-04-01T00:00:00Z"},
        {"reason": "r", "expires_at": "2026-04-01T00:00:00Z"},
        {"address": "g@p.org", "reason": "r", "expires_at": "2026-04-01T00:00:00Z", "x": 1},
    ],
)
def test_a_bad_collaborator_body_is_a_400_before_identity(asgi, body):
    identity = FakeIdentity()
    r = post(asgi, app(identity), "/admin/api/v1/collaborators", body)
    assert r.status == 400 and r.is_problem and identity.calls == []


def test_the_admission_check_answers_the_rules_verdict(asgi):
    verdict = pb.Admission(
        allowed=False, reason="collaborator-expired", collaborator_id=GUEST.id, domain="p.org"
    )
    identity = FakeIdentity(CheckAdmission=verdict)
    r = post(asgi, app(identity), "/admin/api/v1/admission", {"email": "guest@p.org"})
    assert r.status == 200
    assert r.json() == {
        "allowed": False,
        "reason": "collaborator-expired",
        "by_collaborator": False,
        "collaborator_id": GUEST.id,
        "domain": "p.org",
    }
    validate(r.json(), collaborators.ADMISSION)


def test_every_operation_is_an_admin_one_and_documents_its_refusals():
    doc = document([*domains.OPERATIONS, *collaborators.OPERATIONS], title="t", version="1")
    verify = doc["paths"]["/admin/api/v1/domains/{domain}/verify"]["post"]
    assert {"409", "422", "503"} <= set(verify["responses"])
    for op in [*domains.OPERATIONS, *collaborators.OPERATIONS]:
        assert op.admin and op.auth.scopes == ("admin",)
    refs = re.findall(r'"\$ref": "#/components/responses/(E[0-9]+)"', json.dumps(doc))
    assert refs and set(refs) <= set(doc["components"]["responses"])  # every one resolves


@PROPERTY
@given(st.text(max_size=1100) | st.integers() | st.none() | st.lists(st.text(), max_size=2))
def test_any_domain_value_is_admitted_by_the_schema_or_invalid(value):
    try:
        validate({"domain": value}, domains.NEW_DOMAIN)
    except Invalid:
        assert not (isinstance(value, str) and 1 <= len(value) <= 1024)
