"""Properties of the MFA rules (identity/mfa), and recovery codes' examples.

Whatever text arrives, ``totp.parse_code`` returns the ASCII digits it holds, exactly
``DIGITS`` of them, or raises InvalidTotpCode; ``recovery.normalise`` returns the canonical
form (12 symbols of the alphabet, the ASCII text without spaces and hyphens, lower-cased) or
raises InvalidRecoveryCode: never another exception. Every new recovery code normalises to
itself without hyphens, in any case and spacing, and distinct codes hash differently.
``totp.matching_step`` never returns a step at or before ``last_step``, nor one outside the
window, and always accepts the code of a step inside the window that is after ``last_step``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string

import pyotp
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from ontrackio.identity.errors import InvalidRecoveryCode, InvalidTotpCode
from ontrackio.identity.mfa import recovery, totp
from ontrackio.identity.signin import tokens
from tests.unit.core.strategies import PROPERTY, TEXT_ATOMS, hostile_text

ASCII_DIGITS = "0123456789"
UNICODE_DIGITS = "\uff10\uff11\u0660\u0661\u06f1\u0966\u00b2\u2460\U0001d7ce"
CODE_LIKE = st.text(alphabet=ASCII_DIGITS + " -\t\u00a0\u3000" + UNICODE_DIGITS, max_size=14)
RECOVERY_LIKE = st.text(
    alphabet=recovery.ALPHABET + recovery.ALPHABET.upper() + " -_0O1lIi\u212a\uff41",
    max_size=20,
)
CODE_RE = re.compile(rf"[{recovery.ALPHABET}]{{4}}(?:-[{recovery.ALPHABET}]{{4}}){{2}}\Z")


# -- parse_code ---------------------------------------------------------------------------


@PROPERTY
@given(st.one_of(hostile_text, CODE_LIKE, st.sampled_from(TEXT_ATOMS), st.text(max_size=40)))
@example("123 456")
@example("\uff11\uff12\uff13\uff14\uff15\uff16")
@example("123456\n")
@example(" " * 40 + "123456")
def test_parse_code_returns_the_ascii_digits_or_refuses(text):
    try:
        code = totp.parse_code(text)
    except InvalidTotpCode:
        return
    assert len(code) == totp.DIGITS
    assert all(c in ASCII_DIGITS for c in code)
    assert code == "".join(c for c in text if c in ASCII_DIGITS)
    assert set(text) <= set(ASCII_DIGITS + " -") and text.count("-") <= 1


@PROPERTY
@given(
    code=st.text(alphabet=ASCII_DIGITS, min_size=totp.DIGITS, max_size=totp.DIGITS),
    cut=st.integers(1, totp.DIGITS - 1),
    separator=st.sampled_from(["", " ", "  ", "-", " -", "- ", " - "]),
    before=st.integers(0, 3),
    after=st.integers(0, 3),
)
def test_parse_code_reads_every_allowed_spelling(code, cut, separator, before, after):
    typed = " " * before + code[:cut] + separator + code[cut:] + " " * after
    assert totp.parse_code(typed) == code


# -- recovery codes -----------------------------------------------------------------------


@PROPERTY
@given(st.one_of(hostile_text, RECOVERY_LIKE, st.sampled_from(TEXT_ATOMS), st.text(max_size=80)))
@example("k7m2-xq9r-4hbd")
@example("K7M2 XQ9R 4HBD")
@example("\u212a7m2-xq9r-4hbd")  # Kelvin sign, which lower-cases to "k"
@example("k7m2-xq9r-4hbd" + "-" * 60)
def test_normalise_returns_the_canonical_form_or_refuses(text):
    try:
        canonical = recovery.normalise(text)
    except InvalidRecoveryCode:
        return
    assert len(canonical) == recovery.CODE_LENGTH
    assert set(canonical) <= set(recovery.ALPHABET)
    assert text.isascii() and len(text) <= recovery.MAX_INPUT
    assert canonical == text.replace(" ", "").replace("-", "").lower()
    assert recovery.normalise(canonical) == canonical


@PROPERTY
@given(
    count=st.integers(1, 30),
    key=st.binary(min_size=1, max_size=64),
    spacing=st.sampled_from(["-", " ", "", " - ", "--"]),
)
def test_new_codes_normalise_to_themselves_and_hash_apart(count, key, spacing):
    codes = recovery.new_codes(count)
    assert len(codes) == count == len(set(codes))
    hashes = set()
    for code in codes:
        assert CODE_RE.match(code)
        bare = code.replace("-", "")
        assert recovery.normalise(code) == bare
        assert recovery.normalise(code.upper().replace("-", spacing)) == bare
        digest = recovery.code_hash(key, code)
        assert digest == recovery.code_hash(key, code.upper().replace("-", spacing))
        assert len(digest) == 32
        hashes.add(digest)
    assert len(hashes) == count


@PROPERTY
@given(a=st.text(alphabet=recovery.ALPHABET, min_size=12, max_size=12), b=st.data())
def test_distinct_canonical_codes_hash_differently_and_keys_matter(a, b):
    other = b.draw(st.text(alphabet=recovery.ALPHABET, min_size=12, max_size=12))
    assume(other != a)
    key = recovery.derive_key(b"root")
    assert recovery.code_hash(key, a) != recovery.code_hash(key, other)
    assert recovery.code_hash(key, a) != recovery.code_hash(recovery.derive_key(b"toor"), a)


def test_the_alphabet_has_nothing_to_confuse_and_about_60_bits():
    assert len(set(recovery.ALPHABET)) == len(recovery.ALPHABET) == 31
    assert not set(recovery.ALPHABET) & set("0oO1lIi")
    assert set(recovery.ALPHABET) <= set(string.ascii_lowercase + string.digits)
    assert 59 < recovery.ENTROPY_BITS < 60
    assert recovery.COUNT == 10 and len(recovery.new_codes()) == 10


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "k7m2-xq9r-4hb",  # 11
        "k7m2-xq9r-4hbdd",  # 13
        "k7m2-xq9r-4hb0",
        "k7m2-xq9r-4hbo",
        "k7m2-xq9r-4hb1",
        "k7m2-xq9r-4hbl",
        "k7m2-xq9r-4hbi",
        "k7m2-xq9r-4hbI",
        "k7m2_xq9r_4hbd",
        "k7m2-xq9r-4hbd\n",
        "\u212a7m2-xq9r-4hbd",  # Kelvin sign
        "\uff4b7m2-xq9r-4hbd",  # full-width k
        "k7m2\u00a0xq9r\u00a04hbd",
        "k7m2-xq9r-4hbd" + " " * 51,  # 65 characters
        "k" * 10**6,
    ],
)
def test_recovery_codes_outside_the_rules_are_refused(typed):
    with pytest.raises(InvalidRecoveryCode):
        recovery.normalise(typed)
    with pytest.raises(InvalidRecoveryCode):
        recovery.code_hash(b"k" * 32, typed)


def test_the_input_bound_counts_spacing_and_the_message_does_not_echo():
    padded = "k7m2-xq9r-4hbd".center(recovery.MAX_INPUT)
    assert recovery.normalise(padded) == "k7m2xq9r4hbd"
    with pytest.raises(InvalidRecoveryCode) as caught:
        recovery.normalise(padded + " ")
    assert "k7m2" not in str(caught.value)


def test_new_codes_draws_again_when_a_code_repeats(monkeypatch):
    drawn = iter("a" * 24 + "b" * 12)
    monkeypatch.setattr(recovery.secrets, "choice", lambda alphabet: next(drawn))
    assert recovery.new_codes(2) == ["aaaa-aaaa-aaaa", "bbbb-bbbb-bbbb"]


def test_the_key_is_purpose_specific_and_new_codes_needs_one():
    root = b"r" * 32
    key = recovery.derive_key(root)
    assert len(key) == 32 and key not in (root, tokens.derive_key(root))
    assert key == recovery.derive_key(root) != recovery.derive_key(b"s" * 32)
    with pytest.raises(ValueError):
        recovery.new_codes(0)


# -- matching_step ------------------------------------------------------------------------

DIGESTS = [hashlib.sha1, hashlib.sha256, hashlib.sha512]


@st.composite
def totp_attempts(draw):
    secret = base64.b32encode(draw(st.binary(min_size=14, max_size=64))).decode().rstrip("=")
    now = draw(
        st.one_of(
            st.floats(0, 2e10, allow_nan=False),
            st.integers(0, 200),
            st.integers(0, 2 * 10**10),
        )
    )
    current = int(now) // totp.PERIOD
    offset = draw(st.integers(-3, 3))
    step = max(0, current + offset)
    last_step = draw(
        st.one_of(
            st.none(),
            st.integers(current - 4, current + 4),
            st.integers(-(2**63), 2**63),
        )
    )
    digest = draw(st.sampled_from(DIGESTS))
    return secret, now, current, step, last_step, digest


@PROPERTY
@given(totp_attempts())
@example(("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 59.0, 1, 1, 1, hashlib.sha1))
@example(("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 59.0, 1, 2, 1, hashlib.sha1))
@example(("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", 59.0, 1, 0, 0, hashlib.sha1))
def test_matching_step_never_accepts_a_step_at_or_before_last_step(attempt):
    secret, now, current, step, last_step, digest = attempt
    otp = pyotp.TOTP(secret, digest=digest)
    code = otp.generate_otp(step)
    got = totp.matching_step(secret, code, now, last_step=last_step, digest=digest)
    if got is not None:
        assert last_step is None or got > last_step
        assert abs(got - current) <= totp.WINDOW and got >= 0
        assert otp.generate_otp(got) == code
    if abs(step - current) <= totp.WINDOW and (last_step is None or step > last_step):
        assert got is not None and got >= step
