"""Tenant registry rules: what a valid new tenant is, and which status changes are allowed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ontrackio.core.tenancy import InvalidSlug
from ontrackio.identity.domain import tenants as rules
from ontrackio.identity.errors import BadTransition, InvalidTenant

REGIONS = ("eu-central-1", "eu-west-1")
CLUSTER_REGIONS = {"main": "eu-central-1", "eu2": "eu-west-1"}


def make(**changes):
    args = {
        "slug": "acme",
        "name": "Acme Corp",
        "tier": "business",
        "domains": ["acme.example.com"],
        "region": "eu-central-1",
        "placement": "main",
    }
    args.update(changes)
    return rules.new_tenant(**args, allowed_regions=REGIONS, cluster_regions=CLUSTER_REGIONS)


def test_valid_tenant_is_returned_normalised():
    t = make(name="  Acme Corp  ", tier="enterprise", region="eu-west-1", placement="eu2")
    assert t == rules.NewTenant(
        "acme", "Acme Corp", "enterprise", ("acme.example.com",), "eu-west-1", "eu2"
    )


def test_invalid_slug_is_refused():
    with pytest.raises(InvalidSlug):
        make(slug="Acme")


@pytest.mark.parametrize("name", ["", "   ", None, "x" * 201])
def test_name_must_be_1_to_200_characters(name):
    with pytest.raises(InvalidTenant, match="name"):
        make(name=name)


def test_name_of_200_characters_is_accepted():
    assert make(name="x" * 200).name == "x" * 200


def test_name_with_nul_character_is_refused():
    with pytest.raises(InvalidTenant, match="name"):
        make(name="Acme\x00Corp")


@pytest.mark.parametrize("tier", ["", "free", "Business"])
def test_unknown_tier_is_refused(tier):
    with pytest.raises(InvalidTenant, match="tier"):
        make(tier=tier)


def test_region_outside_allowed_regions_is_refused():
    with pytest.raises(InvalidTenant, match="region 'us-east-1' is not allowed"):
        make(region="us-east-1")


def test_unknown_placement_is_refused():
    with pytest.raises(InvalidTenant, match="unknown placement 'mars'; known: eu2, main"):
        make(placement="mars")


def test_a_region_other_than_its_placement_clusters_is_refused_naming_both():
    with pytest.raises(InvalidTenant) as info:
        make(region="eu-west-1", placement="main")  # both allowed, but main is in eu-central-1
    assert str(info.value) == (
        "region 'eu-west-1' is not the region of placement 'main' ('eu-central-1')"
    )


def test_a_tenant_in_its_placement_clusters_region_is_accepted():
    assert make(region="eu-west-1", placement="eu2").placement == "eu2"


def test_domains_are_lowercased_stripped_and_lose_trailing_dot():
    t = make(domains=["  Acme.Example.COM. ", "portal.acme.io"])
    assert t.domains == ("acme.example.com", "portal.acme.io")


def test_duplicate_domains_are_merged_keeping_first_order():
    t = make(domains=["b.example.com", "a.example.com", "B.example.com."])
    assert t.domains == ("b.example.com", "a.example.com")


def test_no_domains_is_allowed():
    assert make(domains=[]).domains == ()


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "localhost",
        "acme",
        "a..example.com",
        "-acme.example.com",
        "acme-.example.com",
        "acme.example.c0m",
        "acme_corp.example.com",
        "acmé.example.com",
        "acme.example.com/path",
        "user@acme.example.com",
        "a" * 64 + ".example.com",
        ("a" * 60 + ".") * 5 + "com",  # over 253 characters
    ],
)
def test_invalid_domain_is_refused_naming_it(domain):
    with pytest.raises(InvalidTenant, match="invalid domain"):
        make(domains=["ok.example.com", domain])


def test_longest_label_is_accepted():
    label = "a" * 63
    assert make(domains=[f"{label}.example.com"]).domains == (f"{label}.example.com",)


# -- status transitions ------------------------------------------------------------------

ALLOWED = {
    ("suspend", "active"): "suspended",
    ("resume", "suspended"): "active",
    ("delete", "provisioning"): "deleting",
    ("delete", "active"): "deleting",
    ("delete", "suspended"): "deleting",
}


@pytest.mark.parametrize("action, status", list(ALLOWED))
def test_allowed_transition_gives_the_new_status(action, status):
    assert rules.transition(action, status) == ALLOWED[(action, status)]


@pytest.mark.parametrize(
    "action, status",
    [(a, s) for a in rules.TRANSITIONS for s in rules.STATUSES if (a, s) not in ALLOWED],
)
def test_any_other_transition_is_refused(action, status):
    with pytest.raises(BadTransition, match=f"cannot {action} a tenant that is {status}"):
        rules.transition(action, status)


def test_every_target_status_is_a_known_status():
    assert {target for _, target in rules.TRANSITIONS.values()} <= set(rules.STATUSES)


def test_all_services_in_needs_every_service_in_the_state():
    states = dict.fromkeys(["identity", "inventory", "privacy", "evidence"], "ready")
    assert rules.all_services_in(states, "ready")
    assert not rules.all_services_in({**states, "privacy": "failed"}, "ready")
    assert not rules.all_services_in({k: v for k, v in states.items() if k != "evidence"}, "ready")


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=300)
    | st.sampled_from(
        [
            "ａｃｍｅ.example.com",
            "acme.example.com\x00",
            "acme%2eexample.com",
            "xn--.com",
            "a..b.com",
            "acme.example.com\n.",
        ]
    )
)
def test_any_domain_text_is_normalised_or_refused(text):
    """The domain parser behind CreateTenant, ResolveDomain and VerifyDomain."""
    try:
        domain = rules.normalise_domain(text)
    except InvalidTenant:
        return
    assert rules.DOMAIN_RE.fullmatch(domain) and domain.isascii() and domain == domain.lower()
    assert domain.isprintable() and " " not in domain
    assert rules.normalise_domain(domain) == domain


@pytest.mark.parametrize("text", ["acme.example.com\n.", "acme.example.com\r\n.", "a\n.b.com"])
def test_a_line_break_inside_a_domain_is_refused(text):
    with pytest.raises(InvalidTenant):
        rules.normalise_domain(text)


def test_surrounding_whitespace_is_not_part_of_a_domain():
    assert rules.normalise_domain(" a.b.com\n\n") == "a.b.com"
