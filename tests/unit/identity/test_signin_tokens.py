"""Invitation link tokens (identity/signin/tokens.py): signed for one tenant, expiring, and
stored only as a keyed hash."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.identity.signin import tokens
from tests.unit.gateway.strategies import PROPERTY

KEY = tokens.derive_key(b"k" * 32)
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _issued():
    return tokens.issue(KEY, "acme", NOW, 3600)


def test_an_issued_token_verifies_until_its_expiry_and_matches_its_stored_hash():
    i = _issued()
    assert len(i.token) == tokens.TOKEN_CHARS
    got = tokens.verify(KEY, "acme", i.token, NOW + timedelta(seconds=3599))
    assert got is not None and got.invitation_id == i.invitation_id
    assert got.expires_at == i.expires_at == NOW + timedelta(hours=1)
    assert tokens.matches(KEY, got, i.secret_hash)
    assert tokens.verify(KEY, "acme", i.token, NOW + timedelta(seconds=3600)) is None


def test_another_tenant_another_key_or_another_stored_hash_refuse_it():
    i = _issued()
    assert tokens.verify(KEY, "acme2", i.token, NOW) is None
    assert tokens.verify(tokens.derive_key(b"j" * 32), "acme", i.token, NOW) is None
    got = tokens.verify(KEY, "acme", i.token, NOW)
    assert not tokens.matches(KEY, got, _issued().secret_hash)


def test_the_invitation_key_is_not_the_token_hash_key_itself():
    assert tokens.derive_key(b"k" * 32) != b"k" * 32
    assert len(KEY) == 32


def test_the_stored_hash_does_not_contain_the_token_or_its_secret():
    i = _issued()
    got = tokens.verify(KEY, "acme", i.token, NOW)
    assert got.secret not in i.secret_hash and i.token.encode() not in i.secret_hash


def test_a_changed_expiry_breaks_the_signature():
    i = _issued()
    payload, mac = i.token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=="))
    raw[16:24] = int((NOW + timedelta(days=365)).timestamp()).to_bytes(8, "big")
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode() + "." + mac
    assert tokens.verify(KEY, "acme", forged, NOW) is None


def test_another_spelling_of_the_same_bytes_is_refused():
    i = _issued()
    payload, mac = i.token.split(".")
    # The last character of 22-char base64 carries 4 unused bits: flip one.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(mac[-1])
    respelled = mac[:-1] + alphabet[last ^ 1]
    assert base64.urlsafe_b64decode(respelled + "==") == base64.urlsafe_b64decode(mac + "==")
    assert tokens.verify(KEY, "acme", f"{payload}.{respelled}", NOW) is None


@PROPERTY
@given(st.text(max_size=120))
@example("A" * 54 + "." + "A" * 22)
@example("=" * 77)
def test_any_other_text_is_refused_and_never_raises(text):
    assert tokens.verify(KEY, "acme", text, NOW) is None


@PROPERTY
@given(st.integers(0, tokens.TOKEN_CHARS - 1), st.sampled_from("AQgw-_.="))
def test_any_one_character_changed_is_refused(position, char):
    i = _issued()
    changed = i.token[:position] + char + i.token[position + 1 :]
    if changed != i.token:
        got = tokens.verify(KEY, "acme", changed, NOW)
        assert got is None
