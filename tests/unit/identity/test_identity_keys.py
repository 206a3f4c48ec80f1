"""Rules of a tenant's key (identity/domain/keys.py): BYO-KMS only on the Enterprise tier,
the KEK a tenant's data keys belong under (which keys a re-wrap visits: the e2e tests of
tests/e2e/test_tenant_keys.py, against the SQL that decides it)."""

from __future__ import annotations

import pytest

from ontrackio.identity.domain import keys as rules
from ontrackio.identity.errors import CustomerKeyRefused

PLATFORM = "arn:aws:kms:eu-central-1:111122223333:key/platform"
CUSTOMER = "arn:aws:kms:eu-central-1:444455556666:key/customer"


def test_only_the_enterprise_tier_may_bring_its_own_key():
    rules.check_byo_allowed("acme", "enterprise")
    with pytest.raises(
        CustomerKeyRefused, match="need the Enterprise tier; tenant 'acme' is on the Business tier"
    ):
        rules.check_byo_allowed("acme", "business")
    with pytest.raises(CustomerKeyRefused):
        rules.check_byo_allowed("acme", "")


def test_a_tenant_without_a_key_of_its_own_is_under_the_platform_key():
    assert rules.target_kek(None, PLATFORM) == PLATFORM
    assert rules.target_kek("", PLATFORM) == PLATFORM
    assert rules.target_kek(CUSTOMER, PLATFORM) == CUSTOMER


def test_state_is_rewrapping_while_anything_is_pending():
    assert rules.state(0) == rules.READY == "ready"
    assert rules.state(1) == rules.REWRAPPING == "rewrapping"
