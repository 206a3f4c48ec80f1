"""Password rules and argon2id hashing of local sign-in (identity/signin/passwords.py)."""

from __future__ import annotations

import unicodedata

import pytest
from argon2 import extract_parameters
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.identity.signin import passwords as pw
from tests.unit.gateway.strategies import PROPERTY

GOOD = "tangerine orbit calliope"


def test_a_password_of_twelve_characters_is_accepted_and_eleven_refused():
    assert pw.check_new("Xq7#mLp2vR9z") == "Xq7#mLp2vR9z"
    with pytest.raises(pw.PasswordRefused, match="at least 12") as refused:
        pw.check_new("Xq7#mLp2vR9")
    assert refused.value.rule == pw.TOO_SHORT


def test_length_counts_code_points_after_nfkc_and_stops_at_128():
    assert pw.check_new("é" * 12 + "x") == "é" * 12 + "x"  # 2 bytes each, 1 character
    assert len(pw.check_new("q" + "é" * 127)) == 128
    with pytest.raises(pw.PasswordRefused) as refused:
        pw.check_new("q" + "é" * 128)
    assert refused.value.rule == pw.TOO_LONG
    # A full-width spelling is the ASCII password after NFKC.
    assert pw.check_new("ｔａｎｇｅｒｉｎｅ ｏｒｂｉｔ") == "tangerine orbit"
    # "ﬁ" (one code point) becomes "fi" (two): counted after normalising.
    assert pw.check_new("ﬁsh & chipsy") == "fish & chipsy"  # 12 once normalised
    with pytest.raises(pw.PasswordRefused) as short:
        pw.check_new("ﬁsh&chipsy")  # 10 code points, 11 once normalised
    assert short.value.rule == pw.TOO_SHORT


def test_huge_input_is_refused_before_normalising():
    with pytest.raises(pw.PasswordRefused) as refused:
        pw.check_new("a" * 100_000)
    assert refused.value.rule == pw.TOO_LONG


@pytest.mark.parametrize(
    "password",
    [
        "password1234",  # listed word plus digits
        "Password123!!",
        "!!!qwerty123456",
        "Monkey2024!!!",
        "dragondragon",
        "aaaaaaaaaaaa",
        "abcabcabcabc",
        "trustno1trustno1",
    ],
)
def test_common_and_trivially_decorated_passwords_are_refused(password):
    with pytest.raises(pw.PasswordRefused) as refused:
        pw.check_new(password)
    assert refused.value.rule == pw.BREACHED
    assert password not in str(refused.value)


def test_the_bundled_list_is_the_ten_thousand_of_its_source_and_read_case_folded():
    listed = pw.common_passwords()
    assert 9_000 < len(listed) <= 10_000
    assert {"password", "123456", "qwerty", "trustno1"} <= listed
    with pytest.raises(pw.PasswordRefused):
        pw.check_new("BASEBALL2024!")


def test_the_email_and_its_local_part_are_refused():
    with pytest.raises(pw.PasswordRefused) as refused:
        pw.check_new("Alice.Liddell@Example.com", email="alice.liddell@example.com")
    assert refused.value.rule == pw.LIKE_EMAIL
    with pytest.raises(pw.PasswordRefused):
        pw.check_new("alice.liddell", email="alice.liddell@example.com")  # 13 characters
    assert pw.check_new(GOOD, email="alice@example.com") == GOOD


def test_control_characters_are_refused_spaces_and_unicode_kept():
    with pytest.raises(pw.PasswordRefused) as refused:
        pw.check_new("tangerine\torbit")
    assert refused.value.rule == pw.CONTROL_CHARACTERS
    assert pw.check_new("  mañana, øresund ") == "  mañana, øresund "


def test_hashes_are_argon2id_with_the_named_parameters():
    h = pw.HASHER.hash(GOOD)
    assert h.startswith("$argon2id$")
    p = extract_parameters(h)
    assert (p.time_cost, p.memory_cost, p.parallelism, p.hash_len, p.salt_len) == (
        pw.ARGON2_TIME_COST,
        pw.ARGON2_MEMORY_KIB,
        pw.ARGON2_PARALLELISM,
        pw.ARGON2_HASH_BYTES,
        pw.ARGON2_SALT_BYTES,
    )
    assert (pw.ARGON2_TIME_COST, pw.ARGON2_MEMORY_KIB) == (2, 19 * 1024)  # OWASP's second
    assert pw.HASHER.verify(h, GOOD)
    assert not pw.HASHER.verify(h, GOOD + "x")
    assert not pw.HASHER.needs_rehash(h)


def test_a_hash_made_with_other_parameters_needs_a_rehash():
    old = pw.Hasher(time_cost=1, memory_kib=8 * 1024).hash(GOOD)
    assert pw.HASHER.verify(old, GOOD)  # still opens
    assert pw.HASHER.needs_rehash(old)


def test_verify_compares_normalised_spellings_and_refuses_garbage_hashes():
    h = pw.HASHER.hash("ｔａｎｇｅｒｉｎｅ ｏｒｂｉｔ!")
    assert pw.HASHER.verify(h, "tangerine orbit!")
    assert not pw.HASHER.verify("not a hash", GOOD)
    assert not pw.HASHER.verify("$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA", GOOD)
    assert not pw.HASHER.verify(h, "x" * 10_000)


def test_the_dummy_hash_is_checked_with_the_real_parameters():
    assert not pw.HASHER.needs_rehash(pw.DUMMY_HASH)
    assert not pw.HASHER.verify(pw.DUMMY_HASH, GOOD)


def _oracle(password: str) -> str | None:
    """An independent reading of the length and character rules: the rule refused, or
    None when only the list could still refuse it."""
    if len(password.encode("utf-8", "surrogatepass")) > pw.MAX_BYTES:
        return pw.TOO_LONG
    n = unicodedata.normalize("NFKC", password)
    if len(n) > 128:
        return pw.TOO_LONG
    if len(n) < 12:
        return pw.TOO_SHORT
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in n):
        return pw.CONTROL_CHARACTERS
    return None


@PROPERTY
@given(st.text(max_size=200) | st.text(alphabet=st.characters(), min_size=100, max_size=600))
@example("\x00" * 12)
@example("\ud800" * 12)
@example("ﬀ" * 70)
def test_any_text_is_accepted_normalised_or_refused_with_a_named_rule(password):
    expected = _oracle(password)
    try:
        got = pw.check_new(password)
    except pw.PasswordRefused as exc:
        assert (
            exc.rule in (expected, pw.BREACHED, pw.LIKE_EMAIL)
            if expected is None
            else (exc.rule == expected)
        ), (exc.rule, expected)
        return
    assert expected is None
    assert got == unicodedata.normalize("NFKC", password)
    assert 12 <= len(got) <= 128
