"""User rules: email and display name."""

from __future__ import annotations

import pytest

from ontrackio.identity.domain.users import validate_display_name, validate_email
from ontrackio.identity.errors import InvalidUser


@pytest.mark.parametrize("email", ["a@b.io", "Jane.Doe+tag@Example.COM", "x" * 64 + "@example.com"])
def test_plausible_email_is_kept_as_given(email):
    assert validate_email(email) == email


def test_email_is_stripped():
    assert validate_email("  jane@example.com\n") == "jane@example.com"


@pytest.mark.parametrize(
    "email",
    [
        "",
        None,
        "jane",
        "jane@",
        "@example.com",
        "jane@example",
        "jane@example.c",
        "jane@@example.com",
        "ja ne@example.com",
        "jane@exa mple.com",
        "x" * 65 + "@example.com",
        "jane@" + "a" * 320 + ".com",
    ],
)
def test_implausible_email_is_refused(email):
    with pytest.raises(InvalidUser, match="email"):
        validate_email(email)


def test_email_with_nul_character_is_refused():
    with pytest.raises(InvalidUser):
        validate_email("ja\x00ne@example.com")


def test_display_name_is_stripped_and_may_be_empty():
    assert validate_display_name("  Jane Doe ") == "Jane Doe"
    assert validate_display_name("") == ""
    assert validate_display_name(None) == ""


def test_display_name_up_to_200_characters():
    assert validate_display_name("x" * 200) == "x" * 200
    with pytest.raises(InvalidUser, match="display_name"):
        validate_display_name("x" * 201)


def test_display_name_with_nul_character_is_refused():
    with pytest.raises(InvalidUser, match="display_name"):
        validate_display_name("Jane\x00Doe")
