"""A tenant_deleted event is acted on only when the registry confirms the deletion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ontrackio.core.deletion import refusal
from ontrackio.core.directory import TenantInfo

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def info(status: str, delete_after: datetime | None = None, placement: str = "main"):
    return TenantInfo("acme", status, placement, "business", delete_after)


def test_deleting_with_grace_over_is_confirmed():
    assert (
        refusal("acme", "acme", "main", info("deleting", NOW - timedelta(seconds=1)), NOW) is None
    )
    assert refusal("acme", "acme", "main", info("deleting", NOW), NOW) is None


def test_a_tenant_no_longer_in_the_registry_is_confirmed():
    # identity answers NOT_FOUND for a deleted tenant: a redelivered event drops nothing live
    assert refusal("acme", "acme", "main", None, NOW) is None
    assert refusal("acme", "acme", "main", info("deleted"), NOW) is None


@pytest.mark.parametrize("status", ["provisioning", "active", "suspended", "unknown"])
def test_a_live_tenant_is_refused(status):
    reason = refusal("acme", "acme", "main", info(status), NOW)
    assert reason == f"tenant 'acme' is {status}, not deleting"


def test_a_tenant_still_in_its_grace_period_is_refused():
    later = info("deleting", NOW + timedelta(seconds=1))
    assert "grace period" in refusal("acme", "acme", "main", later, NOW)
    assert "grace period" in refusal("acme", "acme", "main", info("deleting", None), NOW)


def test_another_placement_than_the_registry_s_is_refused():
    due = info("deleting", NOW - timedelta(days=1), placement="eu2")
    assert "placed on 'eu2'" in refusal("acme", "acme", "main", due, NOW)


def test_an_event_naming_another_tenant_than_its_envelope_is_refused():
    due = info("deleting", NOW - timedelta(days=1))
    assert "names tenant 'acme'" in refusal("globex", "acme", "main", due, NOW)


def test_the_directory_s_fresh_answer_skips_and_refreshes_its_cache():
    from ontrackio.core.directory import TenantDirectory

    answers = iter([info("active"), info("deleting", NOW)])
    directory = TenantDirectory(lambda slug: next(answers), ttl=3600)
    assert directory.get("acme").status == "active"
    assert directory.get("acme").status == "active"  # cached
    assert directory.fresh("acme").status == "deleting"  # asked again despite the ttl
    assert directory.get("acme").status == "deleting"  # and the cache holds it
