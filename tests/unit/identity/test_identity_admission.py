"""The SSO admission rule (``sso/admission.py``) and the collaborator exception's rules
(``domain/collaborators.py``): verified domains exactly, subdomains not, named exceptions
until the instant they expire, look-alike domains never."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.identity.domain import collaborators as rules
from ontrackio.identity.errors import InvalidCollaborator
from ontrackio.identity.sso import admission
from ontrackio.identity.sso.admission import Admission, Collaborator, decide
from tests.unit.gateway.strategies import PROPERTY

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VERIFIED = ("example.com", "xn--bcher-kva.example")


def exception(address="guest@partner.org", expires_at=NOW + timedelta(days=1), id_="c-1"):
    return Collaborator(id_, address, expires_at)


@pytest.mark.parametrize(
    "email",
    ["alice@example.com", "Alice@Example.COM", "alice@example.com.", "bob@bücher.example"],
)
def test_an_address_in_a_verified_domain_is_allowed(email):
    verdict = decide(email, VERIFIED, None, now=NOW)
    assert verdict.allowed and verdict.reason == admission.DOMAIN_VERIFIED
    assert not verdict.by_collaborator


@pytest.mark.parametrize(
    "email",
    [
        "alice@sales.example.com",  # a subdomain is not its parent
        "alice@example.co",
        "alice@notexample.com",
        "alice@example.com.evil.org",
        "alice@ｅｘａｍｐｌｅ.com",  # full-width look-alike: email-invalid, below
        "alice@bucher.example",
    ],
)
def test_any_other_domain_is_refused(email):
    verdict = decide(email, VERIFIED, None, now=NOW)
    assert not verdict.allowed
    assert verdict.reason in (admission.DOMAIN_NOT_ALLOWED, admission.EMAIL_INVALID)


def test_a_subdomain_counts_once_verified_itself():
    assert decide("a@sales.example.com", VERIFIED, None, now=NOW).reason == "domain-not-allowed"
    assert decide("a@sales.example.com", (*VERIFIED, "sales.example.com"), None, now=NOW).allowed


def test_no_verified_domain_allows_nobody_by_domain():
    verdict = decide("alice@example.com", (), None, now=NOW)
    assert verdict == Admission(False, admission.DOMAIN_NOT_ALLOWED, domain="example.com")


@pytest.mark.parametrize(
    "email, reason",
    [
        ("", admission.EMAIL_MISSING),
        ("   ", admission.EMAIL_MISSING),
        (None, admission.EMAIL_MISSING),
        ("alice", admission.EMAIL_INVALID),
        ("alice@example.com@evil.org", admission.EMAIL_INVALID),
        ("alice@ｅｘａｍｐｌｅ.com", admission.EMAIL_INVALID),
        ("alice@\u212aelvin.com", admission.EMAIL_INVALID),
        ("alice@example.com\x00", admission.EMAIL_INVALID),
    ],
)
def test_a_missing_or_unreadable_email_is_refused_as_such(email, reason):
    assert decide(email, VERIFIED, None, now=NOW) == Admission(False, reason)


def test_a_named_collaborator_is_allowed_until_the_instant_it_expires():
    x = exception(expires_at=NOW + timedelta(seconds=1))
    before = decide("guest@partner.org", VERIFIED, x, now=NOW)
    assert before == Admission(True, admission.NAMED_COLLABORATOR, True, "c-1", "partner.org")
    at = decide("guest@partner.org", VERIFIED, x, now=NOW + timedelta(seconds=1))
    assert at == Admission(False, admission.COLLABORATOR_EXPIRED, False, "c-1", "partner.org")
    after = decide("guest@partner.org", VERIFIED, x, now=NOW + timedelta(days=400))
    assert after.reason == admission.COLLABORATOR_EXPIRED


def test_the_exception_matches_its_address_without_regard_to_case():
    assert decide("GUEST@Partner.ORG", VERIFIED, exception(), now=NOW).by_collaborator


def test_an_exception_for_another_address_admits_nobody():
    """Sign-in looks the exception up by the email; handed another one, the rule ignores it."""
    verdict = decide("other@partner.org", VERIFIED, exception(), now=NOW)
    assert verdict == Admission(False, admission.DOMAIN_NOT_ALLOWED, domain="partner.org")


def test_a_verified_domain_wins_over_an_expired_exception():
    x = exception("alice@example.com", expires_at=NOW - timedelta(days=1))
    assert decide("alice@example.com", VERIFIED, x, now=NOW).reason == admission.DOMAIN_VERIFIED


def test_now_must_be_aware():
    with pytest.raises(ValueError):
        decide("alice@example.com", VERIFIED, None, now=NOW.replace(tzinfo=None))


@PROPERTY
@given(
    st.text(max_size=60),
    st.lists(st.sampled_from(["example.com", "partner.org", "a.example.com"]), max_size=3),
    st.booleans(),
    st.integers(min_value=-100, max_value=100),
)
def test_any_input_gives_a_known_verdict_and_only_an_allowed_one_admits(
    email, verified, with_exception, seconds
):
    x = exception(email, NOW + timedelta(seconds=seconds)) if with_exception else None
    verdict = decide(email, verified, x, now=NOW)
    if verdict.allowed:
        assert verdict.reason in (admission.DOMAIN_VERIFIED, admission.NAMED_COLLABORATOR)
        assert verdict.domain in verified or (with_exception and seconds > 0)
        assert verdict.by_collaborator == (verdict.reason == admission.NAMED_COLLABORATOR)
    else:
        assert verdict.reason in admission.REFUSALS and not verdict.by_collaborator


# -- the exception's own rules ----------------------------------------------------------------


def test_expiry_is_required_in_the_future_and_bounded():
    with pytest.raises(InvalidCollaborator, match="required"):
        rules.validate_expiry(None, NOW)
    with pytest.raises(InvalidCollaborator, match="future"):
        rules.validate_expiry(NOW, NOW)
    with pytest.raises(InvalidCollaborator, match="366 days"):
        rules.validate_expiry(NOW + timedelta(days=366, seconds=1), NOW)
    assert rules.validate_expiry(NOW + timedelta(days=366), NOW) == NOW + timedelta(days=366)
    assert rules.validate_expiry(NOW + timedelta(seconds=1), NOW) == NOW + timedelta(seconds=1)


@pytest.mark.parametrize(
    "reason, says",
    [("", "required"), ("  ", "required"), ("x" * 501, "at most 500"), ("a\x00b", "control")],
)
def test_a_reason_is_required_bounded_and_printable(reason, says):
    with pytest.raises(InvalidCollaborator, match=says):
        rules.validate_reason(reason)


@pytest.mark.parametrize("address", ["", "guest", "guest@", "a b@partner.org", "g@p.org\x00"])
def test_an_address_must_be_an_email(address):
    with pytest.raises(InvalidCollaborator, match="address"):
        rules.validate_address(address)


def test_an_address_keeps_its_case_and_compares_without_it():
    assert rules.validate_address("  Guest@Partner.org ") == "Guest@Partner.org"
    assert rules.same_address("Guest@Partner.org", "guest@PARTNER.ORG")
    assert not rules.same_address("guest@partner.org", "guest2@partner.org")
