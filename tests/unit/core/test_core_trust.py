"""Certificate SANs -> caller identity: exactly one URI of this deployment's trust domain
naming a known identity; anything else names nobody."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.core import trust


@pytest.mark.parametrize("name", sorted(trust.IDENTITIES))
def test_each_identity_is_recognised(name):
    sans = [trust.spiffe_id("dep", name).encode(), name.encode()]
    assert trust.identity_of(sans, "dep") == name


@pytest.mark.parametrize(
    "sans",
    [
        None,
        [],
        [b"gateway"],  # a DNS name alone names nobody
        [b"spiffe://ontrackio/other/gateway"],  # another deployment
        [b"spiffe://ontrackio/dep/root"],  # not an identity
        [b"spiffe://ontrackio/dep/gateway/extra"],
        [b"spiffe://elsewhere/dep/gateway"],
        [b"spiffe://ontrackio/dep/gateway", b"spiffe://ontrackio/dep/cli"],  # two
        [b"spiffe://ontrackio/dep/gatew\xc3\xa4y"],
        [b"spiffe://ontrackio/dep/\xff"],
        [b"SPIFFE://ontrackio/dep/gateway"],
        [b"spiffe://ontrackio/dep/gateway\x00"],
    ],
)
def test_anything_else_names_nobody(sans):
    assert trust.identity_of(sans, "dep") is None


@given(st.lists(st.binary(max_size=60), max_size=4))
def test_arbitrary_sans_never_raise_and_name_only_exact_ids(sans):
    got = trust.identity_of(sans, "dep")
    if got is not None:
        assert [s for s in sans if s.startswith(b"spiffe://ontrackio/")] == [
            trust.spiffe_id("dep", got).encode()
        ]


def test_rule_sets_name_only_known_identities():
    for rule in (trust.OPERATORS, trust.TENANT_READERS, trust.TENANT_DATA, trust.CREDENTIALS):
        assert rule <= trust.IDENTITIES
    assert trust.ACTOR_BEARERS == {"gateway", "cli"}
