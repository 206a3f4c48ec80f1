"""Tenant roles and what each may do, shared by identity and the gateway. Pure: no I/O.

Permissions are the API token scopes (access_tokens.SCOPES) plus ``audit:read``: a signed-in
user may do what a token holding the scopes of their roles may do, so every operation is
declared once, by scope, whoever calls it. ``owner`` can do everything an ``admin`` can and
is the only role that can make or unmake owners; ``auditor`` reads (the API, evidence, the
audit trail) and changes nothing. SCIM is for provisioning clients' tokens, never for people.
"""

from __future__ import annotations

from collections.abc import Iterable

from ontrackio.core.errors import InvalidArgument

OWNER = "owner"
ADMIN = "admin"
MEMBER = "member"
AUDITOR = "auditor"
ROLES = (OWNER, ADMIN, MEMBER, AUDITOR)

READ = "api:read"
WRITE = "api:write"
ADMINISTER = "admin"
AUDIT_READ = "audit:read"

ROLE_SCOPES: dict[str, frozenset[str]] = {
    OWNER: frozenset({READ, WRITE, ADMINISTER, AUDIT_READ}),
    ADMIN: frozenset({READ, WRITE, ADMINISTER, AUDIT_READ}),
    MEMBER: frozenset({READ, WRITE}),
    AUDITOR: frozenset({READ, AUDIT_READ}),
}
# The role a user gets when nothing else says (invitations, just-in-time SSO accounts).
DEFAULT_ROLE = MEMBER


class InvalidRoles(InvalidArgument):
    """A role list names an unknown role, or is empty."""


def validate(roles: Iterable[str]) -> list[str]:
    """The roles, each once, in ROLES order. Raises InvalidRoles."""
    given = list(roles)
    if not given:
        raise InvalidRoles(f"at least one role is needed: {', '.join(ROLES)}")
    bad = [r for r in given if r not in ROLES]
    if bad:
        shown = ", ".join(repr(r[:40]) for r in bad[:5])
        raise InvalidRoles(f"unknown role(s) {shown}; known: {', '.join(ROLES)}")
    return sorted(set(given), key=ROLES.index)


def scopes_of(roles: Iterable[str]) -> frozenset[str]:
    """Every permission the roles grant together (unknown names grant nothing)."""
    return frozenset().union(*(ROLE_SCOPES.get(r, frozenset()) for r in roles))


def grants(roles: Iterable[str], scope: str) -> bool:
    return scope in scopes_of(roles)


TOKEN_ACTOR_PREFIX = "token:"


def assigner_roles(held: list[str] | None, actor: str) -> list[str] | None:
    """The roles ``actor`` assigns roles with: a signed-in user's own (``held``); an API
    token's are an admin's (its scopes were checked by the gateway, and a token is never an
    owner: an admin could otherwise mint one and make themselves owner); None for operators
    (the CLI), who may do anything."""
    if held is None and actor.startswith(TOKEN_ACTOR_PREFIX):
        return [ADMIN]
    return held


def may_assign(actor_roles: Iterable[str], old: Iterable[str], new: Iterable[str]) -> bool:
    """Whether someone holding ``actor_roles`` may change a user's roles from ``old`` to
    ``new``: it takes an admin, and only an owner makes or unmakes an owner."""
    actor = set(actor_roles)
    if not actor & {OWNER, ADMIN}:
        return False
    touches_owner = (OWNER in set(old)) != (OWNER in set(new))
    return OWNER in actor or not touches_owner
