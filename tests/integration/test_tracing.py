"""One trace shows a gRPC request, the outbox publish it caused and the consumers that
applied its event in other services (spans exported as JSON lines by every process)."""

from __future__ import annotations

import json
import secrets

from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from tests.conftest import unique
from tests.helpers import create_tenant, eventually, md


def spans(run_dir, trace_id):
    path = run_dir / "spans.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["trace_id"] == trace_id]


def test_trace_crosses_grpc_outbox_rabbitmq_and_consumers(system, channels, run_dir):
    slug = unique("tr")
    create_tenant(channels, slug)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    metadata = md(slug) + (("traceparent", f"00-{trace_id}-{parent}-01"),)
    igrpc.UserServiceStub(channels["identity"]).CreateUser(
        ipb.CreateUserRequest(email=f"{slug}@example.com"), metadata=metadata, timeout=5
    )

    def complete():
        found = spans(run_dir, trace_id)
        names = {(s["service"], s["name"]) for s in found}
        wanted = {
            ("identity", "/ontrackio.identity.v1.UserService/CreateUser"),
            ("identity", "outbox publish"),
            ("privacy", "consume identity.user_created"),
            ("inventory", "consume identity.user_created"),
        }
        return wanted <= names and found

    found = eventually(complete, timeout=20)
    by_name = {(s["service"], s["name"]): s for s in found}
    server = by_name[("identity", "/ontrackio.identity.v1.UserService/CreateUser")]
    assert server["parent_id"] == parent  # continues the caller's trace
    for consumer in ("privacy", "inventory"):
        assert (
            by_name[(consumer, "consume identity.user_created")]["parent_id"] == server["span_id"]
        )
