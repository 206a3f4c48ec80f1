"""SCRAM-SHA-256 verifiers: a verifier matches its password only; anything malformed is no
match (and never an exception)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from ontrackio.core.db import scram


def verifier(password: str, salt: bytes = b"0123456789abcdef", iterations: int = 4096) -> str:
    """Built by the recipe of RFC 5802 section 3, as PostgreSQL's scram_build_secret does."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client).digest()
    salt_b64, stored_b64, server_b64 = (
        base64.b64encode(b).decode() for b in (salt, stored, server)
    )
    return f"SCRAM-SHA-256${iterations}:{salt_b64}${stored_b64}:{server_b64}"


def test_a_verifier_matches_its_password_only():
    v = verifier("9f86d081884c7d65")
    assert scram.verifier_matches(v, "9f86d081884c7d65")
    assert not scram.verifier_matches(v, "9f86d081884c7d66")
    assert not scram.verifier_matches(verifier("a", iterations=10), "b")


def test_other_stored_forms_are_no_match():
    assert not scram.verifier_matches(None, "x")
    assert not scram.verifier_matches("", "x")
    assert not scram.verifier_matches("md5" + hashlib.md5(b"xrole").hexdigest(), "x")
    assert not scram.verifier_matches("x", "x")  # a plaintext password
    assert not scram.verifier_matches(verifier("x", iterations=scram.MAX_ITERATIONS + 1), "x")
    assert not scram.verifier_matches(verifier("päss"), "päss")  # the server SASLpreps these


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=120))
def test_garbage_is_no_match_never_an_error(text):
    assert scram.verifier_matches(text, "x") is False
    assert scram.verifier_matches(scram.PREFIX + text, "x") is False
