"""The platform's shared vocabularies, spelled once: tenant tiers, tenant statuses, asset kinds.

Python code, the gateway's OpenAPI and the CLI take them from here. SQL CHECK constraints
and protobuf enums spell them again in their own languages; a unit test
(tests/unit/core/test_core_vocabulary.py) checks that they agree with this module.
"""

from __future__ import annotations

TIERS: tuple[str, ...] = ("business", "enterprise")

TENANT_STATUSES: tuple[str, ...] = ("provisioning", "active", "suspended", "deleting", "deleted")
ACTIVE = "active"
# The statuses in which a tenant's databases exist (events are still applied while suspended).
LIVE_STATUSES: tuple[str, ...] = ("provisioning", "active", "suspended")

ASSET_KINDS: tuple[str, ...] = ("hardware", "software", "saas", "cloud")
