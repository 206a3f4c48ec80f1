"""The whole API: every resource module's operations, in one list (routes and OpenAPI)."""

from __future__ import annotations

from ontrackio.gateway.api import (
    allowlist,
    assets,
    audit,
    collaborators,
    domains,
    encryption,
    mfa,
    mfa_pages,
    oidc,
    saml,
    sessions,
    signin,
    tokens,
    users,
)
from ontrackio.gateway.api.operation import Operation

OPERATIONS: list[Operation] = [
    *assets.OPERATIONS,
    *users.OPERATIONS,
    *allowlist.OPERATIONS,
    *tokens.OPERATIONS,
    *audit.OPERATIONS,
    *encryption.OPERATIONS,
    *sessions.OPERATIONS,
    *mfa.OPERATIONS,
    *mfa_pages.OPERATIONS,
    *signin.OPERATIONS,
    *saml.OPERATIONS,
    *oidc.OPERATIONS,
    *domains.OPERATIONS,
    *collaborators.OPERATIONS,
]
