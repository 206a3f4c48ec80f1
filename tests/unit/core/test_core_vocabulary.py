"""Tiers, tenant statuses and asset kinds are spelled once (core/vocabulary.py): the SQL
CHECK constraints, protobuf enums and comments, the gateway's OpenAPI document and the
clients that decode the enums all agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ontrackio.core import vocabulary
from ontrackio.identity import client as identity_client
from ontrackio.identity.v1 import identity_pb2 as ipb

ROOT = Path(vocabulary.__file__).resolve().parents[2]
CHECK_RE = re.compile(r"CHECK\s*\(\s*(?P<column>\w+)\s+IN\s*\((?P<values>[^)]*)\)", re.S)


def checks(path: str) -> dict[str, tuple[str, ...]]:
    """column -> the values its `CHECK (column IN (...))` allows, in order."""
    sql = (ROOT / path).read_text()
    return {
        m["column"]: tuple(re.findall(r"'([^']*)'", m["values"])) for m in CHECK_RE.finditer(sql)
    }


def enum_values(enum, prefix: str) -> tuple[str, ...]:
    """The lower-case names of a protobuf enum's values, UNSPECIFIED left out, in order."""
    names = sorted(enum.keys(), key=enum.Value)
    return tuple(n.removeprefix(prefix).lower() for n in names if not n.endswith("UNSPECIFIED"))


def proto_comment(path: str, field: str) -> tuple[str, ...]:
    """The values listed in the `// a | b | c` comment of `field` in a .proto file."""
    m = re.search(rf"\b{field} = \d+;\s*//\s*(?P<values>[a-z| ]+)\n", (ROOT / path).read_text())
    assert m, f"{path}: no value comment on {field}"
    return tuple(v.strip() for v in m["values"].split("|"))


def test_the_control_database_checks_tiers_and_statuses():
    found = checks("services/identity/control_migrations/0001_registry.sql")
    assert found["tier"] == vocabulary.TIERS
    assert found["status"] == vocabulary.TENANT_STATUSES


def test_the_inventory_database_checks_asset_kinds():
    assert checks("services/inventory/migrations/0001_assets.sql")["kind"] == (
        vocabulary.ASSET_KINDS
    )


def test_the_protobuf_enums_are_the_vocabulary():
    assert enum_values(ipb.Tier, "TIER_") == vocabulary.TIERS
    assert enum_values(ipb.TenantStatus, "TENANT_STATUS_") == vocabulary.TENANT_STATUSES


@pytest.mark.parametrize(
    ("path", "field", "values"),
    [
        ("protos/ontrackio/identity/v1/events.proto", "tier", vocabulary.TIERS),
        ("protos/ontrackio/inventory/v1/inventory.proto", "kind", vocabulary.ASSET_KINDS),
    ],
)
def test_the_proto_comments_list_the_vocabulary(path, field, values):
    assert proto_comment(path, field) == values


def test_live_statuses_are_tenant_statuses():
    assert set(vocabulary.LIVE_STATUSES) < set(vocabulary.TENANT_STATUSES)
    assert vocabulary.ACTIVE in vocabulary.LIVE_STATUSES


def test_the_identity_client_decodes_the_enums_to_the_vocabulary():
    assert set(identity_client.TIERS.values()) == set(vocabulary.TIERS)
    assert set(identity_client.STATUSES.values()) == set(vocabulary.TENANT_STATUSES)
    for number, tier in identity_client.TIERS.items():
        assert ipb.Tier.Name(number) == f"TIER_{tier.upper()}"
    for number, status in identity_client.STATUSES.items():
        assert ipb.TenantStatus.Name(number) == f"TENANT_STATUS_{status.upper()}"


def kind_enums(node) -> list[list[str]]:
    """Every `enum` of a property named "kind" anywhere in a JSON schema document."""
    found = []
    if isinstance(node, dict):
        kind = node.get("properties", {}).get("kind")
        if isinstance(kind, dict) and "enum" in kind:
            found.append(kind["enum"])
        for value in node.values():
            found += kind_enums(value)
    elif isinstance(node, list):
        for value in node:
            found += kind_enums(value)
    return found


def test_the_gateways_openapi_offers_the_asset_kinds():
    from ontrackio.gateway.app import openapi_document

    enums = kind_enums(openapi_document())
    assert len(enums) >= 2  # the asset and the request creating one
    assert all(tuple(e) == vocabulary.ASSET_KINDS for e in enums)
