"""The OpenAPI document covers every route and links what one operation's response feeds to
another; schemathesis, with every check but "schema-valid means accepted" (no 5xx, status
codes, media types, headers and response bodies as documented, negative data refused, auth
not ignored), examples, coverage, fuzzing and the stateful phase, finds nothing in the
running gateway (bounded: 60 examples per operation, 100 s), and the stateful phase follows
every declared link at least once to a 2xx answer; random Host values get the tenant's
answer exactly when they normalise to its host, else a 4xx problem.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ontrackio.devtools.stack import ROOT
from ontrackio.gateway.hosts import normalise_host
from tests.conftest import unique
from tests.e2e.test_gateway_kit import (  # noqa: F401 - fixtures
    gateway_fixture,
    make_token,
    raw,
    request_bytes,
    tenant_a_fixture,
)
from tests.helpers import create_tenant, extra_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def relaxed(system, tmp_path_factory):
    """The gateway with rate limits raised, so the fuzzer is not answered 429 throughout."""
    with extra_gateway(
        system,
        "gateway-relaxed",
        tmp_path_factory.mktemp("relaxed"),
        ONTRACK_GATEWAY_RATE_LIMIT_IP_PER_SECOND="10000",
        ONTRACK_GATEWAY_RATE_LIMIT_IP_BURST="10000",
        ONTRACK_GATEWAY_RATE_LIMIT_TOKEN_PER_SECOND="10000",
        ONTRACK_GATEWAY_RATE_LIMIT_TOKEN_BURST="10000",
    ) as port:
        yield port


def test_document_covers_every_route(gateway, tenant_a):
    r = raw(gateway.port, request_bytes("GET", "/openapi.json", gateway.host(tenant_a), close=True))
    assert r.status == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    from ontrackio.gateway.api.catalogue import OPERATIONS
    from ontrackio.gateway.api.operation import AuthKind, BodyKind

    for op in OPERATIONS:
        item = doc["paths"][op.path][op.method.lower()]
        assert item["responses"], op.operation_id
        assert "400" in item["responses"] and "429" in item["responses"]
        if op.body.kind is not BodyKind.NONE:
            content = item["requestBody"]["content"]
            assert set(content) == set(op.body.media_types)
            assert all(c["schema"] for c in content.values())
            assert "415" in item["responses"]
        else:
            assert "requestBody" not in item
        if op.auth.kind is AuthKind.BEARER:
            assert item["security"] == [{"bearer": list(op.auth.scopes)}]
        assert item.get("x-admin", False) is op.admin
        for link in item["responses"][str(op.status)].get("links", {}).values():
            target = next(o for o in OPERATIONS if o.operation_id == link["operationId"])
            assert set(link["parameters"]) <= {p.name for p in target.params}
    for probe in ("/healthz", "/readyz", "/openapi.json"):
        assert probe in doc["paths"]


# The run authenticates with one admin token, which GET /admin/api/v1/tokens lists. Left to
# itself, schemathesis feeds ids it read from responses to DELETE /admin/api/v1/tokens/{id}
# (the response data source of the examples, coverage and fuzzing phases, and the links its
# dependency analysis infers, listTokens -> revokeToken): it revokes its own token, and every
# later request, the stateful phase's included, is a 401 that follows no link ("0 covered").
# So revokeToken gets only generated ids and those of the tokens the run itself creates (the
# declared createToken -> revokeToken link); the Location-header inference stays on.
#
# A page that needs a session refuses a request without one by sending the browser to sign
# in (303 to /signin, documented): for the sign-out, MFA and security pages that redirect is
# the refusal of a request missing its session cookie, besides the usual 4xx.
SCHEMATHESIS_CONFIG = """
[phases.stateful.inference]
algorithms = ["location-headers"]

[[operations]]
include-operation-id = "signOutPage"
checks.negative_data_rejection.expected-statuses = ["303", "400", "401", "403", "404", "429"]

[[operations]]
include-operation-id = "mfaPage"
checks.negative_data_rejection.expected-statuses = ["303", "400", "401", "403", "404", "429"]

[[operations]]
include-operation-id = "accountSecurityPage"
checks.negative_data_rejection.expected-statuses = ["303", "400", "401", "403", "404", "429"]

[[operations]]
include-operation-id = "revokeToken"
phases.examples.extra-data-sources.responses = false
phases.coverage.extra-data-sources.responses = false
phases.fuzzing.extra-data-sources.responses = false
"""


def declared_links(spec: dict) -> set[tuple[str, str]]:
    """``(source operation label, link name)`` of every link the document declares."""
    return {
        (f"{method.upper()} {path}", name)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        for response in op["responses"].values()
        for name in response.get("links", {})
    }


def links_followed(ndjson: Path) -> set[tuple[str, str]]:
    """``(source label, link name)`` of the links the stateful phase applied and whose
    request was answered 2xx, from schemathesis's NDJSON event report."""
    followed = set()
    for line in ndjson.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if event is None:
            continue
        recorder = event.get("recorder") or {}
        for case_id, node in recorder.get("cases", {}).items():
            transition = node.get("transition")
            if not (transition and node.get("is_transition_applied")):
                continue
            response = (recorder.get("interactions", {}).get(case_id) or {}).get("response")
            if response and 200 <= response["status_code"] < 300:
                # "POST /api/v1/assets -> [201] GetAsset -> GET /api/v1/assets/{id}"
                source, via, _ = transition["id"].split(" -> ")
                followed.add((source, via.split("] ", 1)[1]))
    return followed


def test_schemathesis_finds_no_server_errors(relaxed, channels, tmp_path):
    slug = unique("gf")
    create_tenant(channels, slug)
    _, token = make_token(channels, slug, "api:read", "api:write", "admin")
    host = f"{slug}.localhost:{relaxed}"
    spec = raw(relaxed, request_bytes("GET", "/openapi.json", host, close=True)).json()
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(spec))
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    report = tmp_path / "events.ndjson"
    run = _schemathesis(path, config, relaxed, host, token, report, tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    declared = declared_links(spec)
    assert len(declared) >= 3, declared  # a document that lost its links fails here
    missing = declared - links_followed(report)
    assert not missing, f"declared links never followed to a 2xx: {sorted(missing)}"
    auth = [("Authorization", f"Bearer {token}")]
    still = raw(relaxed, request_bytes("GET", "/admin/api/v1/tokens", host, auth, close=True))
    assert still.status == 200, "the run revoked the token it authenticates with"


def _schemathesis(path, config, relaxed, host, token, report, tmp_path):
    return subprocess.run(
        [
            # st with ast.parse serialised (CPython 3.11's thread-unsafe AST counter).
            str(ROOT / ".venv" / "bin" / "python"),
            str(ROOT / "tests" / "e2e" / "schemathesis_cli.py"),
            "--config-file",
            str(config),
            "run",
            str(path),
            "--url",
            f"http://127.0.0.1:{relaxed}",
            "-H",
            f"Host: {host}",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            # A schema-valid value need not be a valid one: an opaque page_token the gateway
            # never issued, or 0000-00-00 (the time pattern checks shape, not the calendar),
            # is rightly a 400.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "60",
            "--workers",
            "2",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-time",
            "100",
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


@pytest.fixture(scope="module")
def fuzz_tenant(channels):
    slug = unique("gh")
    create_tenant(channels, slug)
    _, token = make_token(channels, slug, "api:read")
    return slug, token


# Host values: the tenant's host respelled (case, port, trailing dot, blanks) or mangled
# (look-alikes, NUL, bidi, percent, other tenants), and arbitrary Latin-1 (what HTTP carries).
_MANGLE = ["", ".", ":", ":8080", ":99999", " ", "\t", "\x00", "%2e", "\u00a0", "\xad", "@x"]


@st.composite
def hosts(draw, slug: str, port: int) -> str:
    base = draw(st.sampled_from([f"{slug}.localhost", f"{slug}.LOCALHOST", f"x{slug}.localhost"]))
    flips = draw(st.lists(st.booleans(), min_size=len(base), max_size=len(base)))
    base = "".join(c.upper() if f else c for c, f in zip(base, flips, strict=True))
    host = base + draw(st.sampled_from(["", f":{port}", ".", f".:{port}"]))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(host)))
        host = host[:at] + draw(st.sampled_from(_MANGLE)) + host[at:]
    return host.replace("\r", "").replace("\n", "")


def test_random_hosts_reach_the_tenant_exactly_when_they_normalise_to_it(relaxed, fuzz_tenant):
    slug, token = fuzz_tenant
    own = normalise_host(f"{slug}.localhost")
    latin1 = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=40)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(hosts(slug, relaxed) | latin1)
    @example(f"{slug}.localhost")
    @example(f"{slug}.localhost\xa0")  # NBSP is not stripped: no tenant
    def check(host):
        auth = [("Authorization", f"Bearer {token}")]
        r = raw(relaxed, request_bytes("GET", "/api/v1/assets", host, auth, close=True))
        assert r.status < 500, (host, r.status)
        if normalise_host(host) == own:
            assert r.status == 200, (host, r.status)
        else:
            assert r.status in (400, 404), (host, r.status)

    check()
