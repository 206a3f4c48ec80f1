"""Tenant slugs and the PostgreSQL names derived from them."""

from __future__ import annotations

import grpc
import pytest

from ontrackio.catalogue import SERVICES
from ontrackio.core import tenancy
from ontrackio.core.grpcstatus import status_for
from ontrackio.core.tenancy import MAX_IDENTIFIER, InvalidSlug, Names, role_password

LONGEST_SLUG = "a" + "9" * 30
LONGEST_DEPLOYMENT = "d" * 12  # config.PREFIX_RE allows 12 characters


@pytest.mark.parametrize(
    "slug", ["ab", "a1", "a-b", "a--b", "acme", "acme-corp-2", LONGEST_SLUG, "z" * 31]
)
def test_valid_slugs_are_returned_unchanged(slug):
    assert tenancy.validate_slug(slug) == slug


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "a",  # too short
        "a" * 32,  # too long
        "1acme",  # leading digit
        "-acme",  # leading hyphen
        "Acme",
        "acMe",
        "ac_me",
        "ac.me",
        "ac me",
        "acmé",
        "аcme",  # Cyrillic а
        "_template",
        "_control",
        " acme",
    ],
)
def test_invalid_slugs_are_refused(slug):
    with pytest.raises(InvalidSlug):
        tenancy.validate_slug(slug)


@pytest.mark.parametrize("value", [None, 42, b"acme", ["acme"]])
def test_non_string_slug_is_refused(value):
    with pytest.raises(InvalidSlug):
        tenancy.validate_slug(value)


def test_an_invalid_slug_is_answered_as_invalid_argument():
    """What a caller is told for a malformed slug: INVALID_ARGUMENT with the refusal's own
    message (not INTERNAL and a generic text)."""
    with pytest.raises(InvalidSlug) as refused:
        tenancy.validate_slug("Not A Slug")
    assert status_for(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, str(refused.value))


def test_slug_with_trailing_newline_is_refused():
    with pytest.raises(InvalidSlug):
        tenancy.validate_slug("acme\n")


def test_slug_ending_in_hyphen_is_refused():
    with pytest.raises(InvalidSlug):
        tenancy.validate_slug("acme-")


# -- names -------------------------------------------------------------------------------


def test_tenant_database_and_role_share_the_documented_name():
    names = Names("ot", "inventory")
    assert names.tenant_database("acme") == "ot_inventory_acme"
    assert names.tenant_role("acme") == "ot_inventory_acme"


def test_template_and_control_names():
    names = Names("ot", "identity")
    assert names.template_database == names.template_role == "ot_identity__template"
    assert names.control_database == names.control_role == "ot_identity__control"


def test_tenant_names_refuse_invalid_slugs():
    names = Names("ot", "identity")
    with pytest.raises(InvalidSlug):
        names.tenant_database("Bad")
    with pytest.raises(InvalidSlug):
        names.tenant_role("_template")


@pytest.mark.parametrize("service", SERVICES)
def test_longest_names_fit_postgres_identifier_limit(service):
    names = Names(LONGEST_DEPLOYMENT, service)
    for name in (
        names.tenant_database(LONGEST_SLUG),
        names.tenant_role(LONGEST_SLUG),
        names.template_database,
        names.control_database,
    ):
        assert len(name.encode()) <= MAX_IDENTIFIER


def test_name_over_63_bytes_is_refused_not_truncated():
    names = Names("d" * 40, "inventory")
    with pytest.raises(InvalidSlug, match="63"):
        names.tenant_database(LONGEST_SLUG)


@pytest.mark.parametrize("service", SERVICES)
def test_template_and_control_never_equal_a_tenant_name(service):
    names = Names("ot", service)
    reserved = {names.template_database, names.control_database}
    prefix = f"ot_{service}_"
    for name in reserved:
        suffix = name.removeprefix(prefix)
        with pytest.raises(InvalidSlug):  # the part after the prefix is no valid slug
            tenancy.validate_slug(suffix)


def test_names_of_different_services_do_not_collide():
    built = {Names("ot", s).tenant_database("acme") for s in SERVICES}
    built |= {Names("ot", s).template_database for s in SERVICES}
    assert len(built) == 2 * len(SERVICES)


def test_owned_prefix_is_a_like_pattern_with_escaped_underscores():
    assert Names("ot", "privacy").owned_prefix() == "ot\\_privacy\\_%"


# -- role passwords ----------------------------------------------------------------------


def test_role_password_is_deterministic():
    assert role_password("k", "ot_identity_acme") == role_password("k", "ot_identity_acme")


def test_role_password_depends_on_secret_and_role():
    base = role_password("k1", "ot_identity_acme")
    assert role_password("k2", "ot_identity_acme") != base
    assert role_password("k1", "ot_identity_acme2") != base


def test_role_password_does_not_contain_secret_or_role():
    password = role_password("topsecretkey", "ot_identity_acme")
    assert "topsecretkey" not in password and "acme" not in password
    assert len(password) == 64 and set(password) <= set("0123456789abcdef")
