"""An identity proven by the tenant's IdP, as the SSO protocols hand it to sign-in.

The SAML and OIDC modules check the protocol (signatures, audience, replay, nonce, …) and
describe the person they vouch for as an ``ExternalIdentity``; ``signin.sso.complete`` decides
whether that person may sign in to the tenant (allowed domains, named collaborators,
just-in-time creation) and opens the session. Accounts are keyed on ``(issuer, subject)``,
never on the email, which an IdP may let a user change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How a session was opened (sessions.method); SSO methods carry their provider name.
METHOD_PASSWORD = "password"
METHOD_INVITATION = "invitation"
METHOD_SAML = "saml"
OIDC_PREFIX = "oidc:"

# Where the session's MFA assurance came from (sessions.mfa_source).
MFA_IDP = "idp"
MFA_LOCAL = "local"
MFA_NONE = "none"


@dataclass(frozen=True)
class ExternalIdentity:
    """One person as an IdP asserted them.

    ``issuer``: the SAML IdP entity id or the OIDC ``iss`` (for Entra, the tenant-specific
    issuer); ``subject``: the SAML NameID or the OIDC ``sub`` (Entra: ``tid:oid``), unique
    and stable within the issuer. ``method``: ``saml`` or ``oidc:<provider>``.
    ``mfa_evidence``: what the assertion says of how the user authenticated (SAML
    ``AuthnContextClassRef`` values, OIDC ``amr`` and ``acr`` values), judged by the MFA
    policy, never here. ``attributes``: the mapped attributes, for the audit trail.
    """

    method: str
    issuer: str
    subject: str
    email: str
    email_verified: bool = True
    display_name: str = ""
    mfa_evidence: tuple[str, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
