"""The OpenAPI document covers every route, and schemathesis finds no 5xx in the running
gateway (bounded: ~30 examples per operation)."""

from __future__ import annotations

import json
import subprocess

import pytest

from ontrackio.devtools.stack import ROOT
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
    for probe in ("/healthz", "/readyz", "/openapi.json"):
        assert probe in doc["paths"]


def test_schemathesis_finds_no_server_errors(relaxed, channels, tmp_path):
    slug = unique("gf")
    create_tenant(channels, slug)
    _, token = make_token(channels, slug, "api:read", "api:write", "admin")
    host = f"{slug}.localhost:{relaxed}"
    spec = raw(relaxed, request_bytes("GET", "/openapi.json", host, close=True)).json()
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(spec))
    run = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "st"),
            "run",
            str(path),
            "--url",
            f"http://127.0.0.1:{relaxed}",
            "-H",
            f"Host: {host}",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--workers",
            "2",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-time",
            "60",
            "--generation-deterministic",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
