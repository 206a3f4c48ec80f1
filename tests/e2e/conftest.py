"""End-to-end fixtures and hooks: fault tests run last and must leave the system whole
(tests/fault_isolation.py says how and why)."""

from tests.fault_isolation import (  # noqa: F401 - a hook and an autouse fixture
    pytest_collection_modifyitems,
    recovers_from_its_fault,
)
