"""Roles grant scopes; who may assign which role; the session cookie, CSRF and expiry rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ontrackio.identity import access_tokens
from ontrackio.identity.roles import rules as roles
from ontrackio.identity.sessions import rules

KEY = b"s" * 32
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_each_role_grants_its_scopes_and_no_more():
    assert roles.scopes_of(["member"]) == {"api:read", "api:write"}
    assert roles.scopes_of(["auditor"]) == {"api:read", "audit:read"}
    assert "admin" in roles.scopes_of(["admin"]) and "admin" in roles.scopes_of(["owner"])
    assert "scim" not in roles.scopes_of(roles.ROLES)  # provisioning is for tokens only
    assert roles.scopes_of(["member", "auditor"]) == {"api:read", "api:write", "audit:read"}
    assert roles.scopes_of(["root", ""]) == frozenset()
    # every scope a role grants is a token scope: one permission vocabulary
    assert roles.scopes_of(roles.ROLES) <= set(access_tokens.SCOPES)


def test_role_lists_are_validated():
    assert roles.validate(["member", "admin", "member"]) == ["admin", "member"]
    with pytest.raises(roles.InvalidRoles):
        roles.validate([])
    with pytest.raises(roles.InvalidRoles, match="superuser"):
        roles.validate(["superuser"])


@pytest.mark.parametrize(
    "actor, old, new, allowed",
    [
        (["admin"], ["member"], ["admin"], True),
        (["admin"], ["member"], ["owner"], False),  # only owners make owners
        (["admin"], ["owner"], ["admin"], False),  # nor unmake them
        (["owner"], ["member"], ["owner"], True),
        (["owner"], ["owner"], ["member"], True),
        (["member"], ["member"], ["auditor"], False),
        (["auditor"], ["member"], ["member", "auditor"], False),
        (["admin"], ["owner", "auditor"], ["owner"], True),  # owner kept: not touched
    ],
)
def test_who_may_assign_roles(actor, old, new, allowed):
    assert roles.may_assign(actor, old, new) is allowed


def test_cookies_parse_verify_and_differ_from_tokens():
    issued = rules.issue(KEY)
    assert issued.bearer.startswith("ots_") and len(issued.bearer) == rules.COOKIE_CHARS
    session_id, secret = rules.split_cookie(issued.bearer)
    assert rules.id_is_genuine(KEY, session_id)
    assert rules.secret_matches(KEY, session_id, secret, issued.secret_hash)
    other = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert not rules.secret_matches(KEY, session_id, other, issued.secret_hash)
    assert access_tokens.split_bearer(issued.bearer) is None  # a cookie is no API token
    assert rules.split_cookie(access_tokens.issue(KEY).bearer) is None  # and vice versa


@given(st.text(max_size=200))
def test_any_other_text_is_no_cookie(text):
    parts = rules.split_cookie(text)
    if parts is not None:
        assert text.startswith("ots_") and len(text) == rules.COOKIE_CHARS
        assert text.isascii() and text.isprintable()


def test_csrf_tokens_belong_to_one_session_and_key():
    a, b = rules.issue(KEY).token_id, rules.issue(KEY).token_id
    token = rules.csrf_token(KEY, a)
    assert rules.csrf_matches(KEY, a, token)
    assert not rules.csrf_matches(KEY, b, token)
    assert not rules.csrf_matches(b"other key", a, token)
    assert not rules.csrf_matches(KEY, a, "")
    assert not rules.csrf_matches(KEY, a, token + "x" * 100)


@given(st.text(max_size=100))
def test_a_presented_csrf_token_never_raises(presented):
    assert rules.csrf_matches(KEY, "a" * 24, presented) in (True, False)


def test_expiry_never_passes_the_absolute_limit():
    e = rules.expiry_at_start(NOW, 3600, 1800)
    assert e.expires_at == NOW + timedelta(seconds=1800) and e.idle_expires_at == e.expires_at
    e = rules.expiry_at_start(NOW, 600, 3600)
    assert e.idle_expires_at == NOW + timedelta(seconds=600)
    later = NOW + timedelta(seconds=3300)
    assert rules.idle_after_touch(later, 600, e.expires_at) == e.expires_at
    live = dict(idle_expires_at=e.idle_expires_at, expires_at=e.expires_at)
    assert rules.is_live(NOW, **live, revoked=False, active=True)
    assert not rules.is_live(NOW, **live, revoked=True, active=True)
    assert not rules.is_live(NOW, **live, revoked=False, active=False)
    assert not rules.is_live(e.idle_expires_at, **live, revoked=False, active=True)


def test_timeouts_are_bounded():
    assert rules.validate_timeouts(900, 3600) == (900, 3600)
    for idle, absolute in ((60, 3600), (900, 60), (7200, 3600), (900, 10**9)):
        with pytest.raises(rules.InvalidSessionPolicy):
            rules.validate_timeouts(idle, absolute)


def test_actors():
    assert rules.user_actor("u1") == "user:u1"
    assert rules.actor_user_id("user:u1") == "u1"
    assert rules.actor_user_id("token:abc") is None and rules.actor_user_id("operator") is None


def test_a_token_assigns_roles_as_an_admin_never_as_an_owner():
    """An admin could mint an admin token and, were a token's actor unchecked, make
    themselves owner with it."""
    as_token = roles.assigner_roles(None, "token:abcdef")
    assert as_token == [roles.ADMIN]
    assert not roles.may_assign(as_token, [roles.ADMIN], [roles.OWNER])
    assert not roles.may_assign(as_token, [roles.OWNER], [roles.ADMIN])
    assert roles.may_assign(as_token, [roles.MEMBER], [roles.ADMIN])
    assert roles.assigner_roles(None, "cli:e2e") is None  # operators keep every right
    assert roles.assigner_roles([roles.MEMBER], "user:u1") == [roles.MEMBER]
