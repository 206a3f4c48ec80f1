"""The edges of the token rules identity applies when it issues and checks a token: lifetime
bounds, the expiry instant, name limits, the scope order, the id checksum and the lifetime
left that a refusal names. Written to kill mutants that survived the mutation check
(docs/testing.md); each test pins a boundary the earlier tests only crossed from afar."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from ontrackio.identity import access_tokens as rules
from ontrackio.identity.errors import TokenWidening

KEY = b"k" * 32
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_lifetimes_from_zero_to_five_years_are_accepted_and_zero_means_never():
    assert rules.validate_expiry(0) is None
    assert rules.validate_expiry(1) == 1
    assert rules.validate_expiry(rules.MAX_EXPIRY_SECONDS) == rules.MAX_EXPIRY_SECONDS


@pytest.mark.parametrize("seconds", [-1, rules.MAX_EXPIRY_SECONDS + 1])
def test_lifetimes_outside_the_bounds_are_refused_naming_them(seconds):
    with pytest.raises(rules.InvalidToken, match=f"0 \\(never\\) to {rules.MAX_EXPIRY_SECONDS}"):
        rules.validate_expiry(seconds)


def test_a_token_is_expired_from_its_expiry_instant_on():
    end = NOW + timedelta(hours=1)
    assert not rules.is_expired(end, end - timedelta(microseconds=1))
    assert rules.is_expired(end, end)
    assert rules.is_expired(end, end + timedelta(seconds=1))
    assert not rules.is_expired(None, NOW)  # never expires


def test_a_name_is_stripped_and_may_be_exactly_the_maximum_length():
    assert rules.validate_name("  ops key \t") == "ops key"
    assert rules.validate_name(None) == ""
    longest = "n" * rules.MAX_NAME
    assert rules.validate_name(longest) == longest
    with pytest.raises(rules.InvalidToken, match=f"at most {rules.MAX_NAME}"):
        rules.validate_name(longest + "n")


@pytest.mark.parametrize("char", ["\x1f", "\x7f", "\x9f"])
def test_the_last_control_characters_of_each_range_are_refused(char):
    with pytest.raises(rules.InvalidToken, match="control characters"):
        rules.validate_name(f"a{char}b")


@pytest.mark.parametrize("char", [" ", "~", "\xa0", "\xe9"])
def test_the_first_printable_characters_after_each_range_are_kept(char):
    assert rules.validate_name(f"a{char}b") == f"a{char}b"


def test_scopes_come_back_once_each_in_the_documented_order():
    assert rules.validate_scopes(["scim", "api:read", "scim", "admin"]) == [
        "api:read",
        "admin",
        "scim",
    ]
    with pytest.raises(rules.InvalidToken, match="at least one scope"):
        rules.validate_scopes([])
    with pytest.raises(rules.InvalidToken, match="'root'"):
        rules.validate_scopes(["api:read", "root"])


def test_cidrs_come_back_normalised_once_each_and_at_most_the_maximum():
    assert rules.validate_cidrs(["10.0.0.1", "10.0.0.1/32", "::ffff:10.0.0.0/104"]) == [
        "10.0.0.1/32",
        "10.0.0.0/8",
    ]
    assert len(rules.validate_cidrs([f"10.0.0.{i}" for i in range(rules.MAX_CIDRS)])) == 100
    with pytest.raises(rules.InvalidToken, match=f"at most {rules.MAX_CIDRS}"):
        rules.validate_cidrs([f"10.0.{i // 256}.{i % 256}" for i in range(rules.MAX_CIDRS + 1)])
    with pytest.raises(rules.InvalidToken, match="'10.0.0.1/8'"):
        rules.validate_cidrs(["10.0.0.1/8"])  # host bits set


def test_an_issued_id_carries_a_checksum_only_its_key_accepts():
    issued = rules.issue(KEY)
    assert rules.id_is_genuine(KEY, issued.token_id)
    assert not rules.id_is_genuine(b"other" * 8, issued.token_id)
    forged = issued.token_id[:-1] + ("0" if issued.token_id[-1] != "0" else "1")
    assert not rules.id_is_genuine(KEY, forged)
    tampered = ("0" if issued.token_id[0] != "0" else "1") + issued.token_id[1:]
    assert not rules.id_is_genuine(KEY, tampered)  # the checksum covers the random part


def test_an_issued_bearer_matches_only_its_own_stored_hash():
    issued = rules.issue(KEY)
    token_id, secret = rules.split_bearer(issued.bearer)
    assert token_id == issued.token_id
    assert rules.secret_matches(KEY, token_id, secret, issued.secret_hash)
    assert not rules.secret_matches(b"other" * 8, token_id, secret, issued.secret_hash)
    other = rules.issue(KEY)
    assert not rules.secret_matches(KEY, token_id, secret, other.secret_hash)
    assert rules.hash_secret(KEY, token_id, secret) == issued.secret_hash


def _widening(**overrides) -> TokenWidening:
    args = dict(
        scopes=["api:read"],
        cidrs=[],
        expires_at=None,
        parent_scopes=["api:read"],
        parent_cidrs=[],
        parent_expires_at=None,
        now=NOW,
    )
    args.update(overrides)
    with pytest.raises(TokenWidening) as info:
        rules.check_narrower(**args)
    return info.value


def test_a_refused_lifetime_names_the_whole_seconds_the_minter_has_left():
    refused = _widening(parent_expires_at=NOW + timedelta(seconds=90.9))
    assert "expires_in_seconds must be 1 to 90)" in str(refused)


def test_a_minter_expiring_now_may_mint_no_lifetime_at_all():
    refused = _widening(parent_expires_at=NOW, expires_at=NOW + timedelta(seconds=1))
    assert "any lifetime (it expires now)" in str(refused)
    refused = _widening(parent_expires_at=NOW - timedelta(hours=1))  # already past
    assert "any lifetime (it expires now)" in str(refused)


def test_extra_scopes_are_named_known_ones_first_in_the_documented_order():
    refused = _widening(scopes=["zzz", "scim", "api:write", "aaa"], parent_scopes=[])
    assert "scope(s) 'api:write', 'scim', 'aaa', 'zzz' that it lacks" in str(refused)
    assert refused.reasons == (rules.WIDER_SCOPES,)


def test_an_expiry_equal_to_the_minters_is_not_wider():
    end = NOW + timedelta(hours=1)
    rules.check_narrower(
        scopes=["api:read"],
        cidrs=[],
        expires_at=end,
        parent_scopes=["api:read"],
        parent_cidrs=[],
        parent_expires_at=end,
        now=NOW,
    )


def test_a_malformed_id_is_never_genuine():
    genuine = rules.issue(KEY).token_id
    for token_id in ["", "short", genuine.upper(), genuine + "0", genuine[:-1], "g" * 24]:
        assert not rules.id_is_genuine(KEY, token_id), token_id


def test_the_id_checksum_and_secret_hash_are_the_documented_hmacs():
    """Stored hashes and issued ids outlive a release: the keyed functions must stay those the
    module documents (HMAC-SHA256; the id's over ``id:<random part>``)."""
    random_part, secret = "0123456789abcdef", "s" * 43
    check = hmac.new(KEY, b"id:" + random_part.encode(), hashlib.sha256).hexdigest()[:8]
    assert rules.id_is_genuine(KEY, random_part + check)
    token_id = random_part + check
    expected = hmac.new(KEY, f"{token_id}:{secret}".encode(), hashlib.sha256).digest()
    assert rules.hash_secret(KEY, token_id, secret) == expected


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("::ffff:192.0.2.1", "192.0.2.1"),  # mapped IPv4 kept as IPv4
        ("2001:DB8::0:1", "2001:db8::1"),  # one spelling per address
        ("not an ip", "not an ip"),
        ("a\x00b\nc", "a?b?c"),
        ("x" * 100, "x" * 64),
    ],
)
def test_audit_addresses_are_normalised_or_cut_to_a_printable_excerpt(address, kept):
    assert rules.audit_address(address) == kept
