"""Identity's domain errors (status codes come from the shared table in core.errors)."""

from ontrackio.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)


class TenantExists(AlreadyExists):
    pass


class DomainTaken(AlreadyExists):
    pass


class TenantNotFound(NotFound):
    pass


class BadTransition(FailedPrecondition):
    """The tenant's status does not allow the requested change."""


class InvalidTenant(InvalidArgument):
    pass


class UserNotFound(NotFound):
    pass


class UserExists(AlreadyExists):
    pass


class InvalidUser(InvalidArgument):
    pass


class InvalidAuditQuery(InvalidArgument):
    """A ListAudit filter or a RecordRefusal field is not acceptable."""


class DomainNotFound(NotFound):
    """The tenant has no such custom domain."""


class TokenWidening(PermissionDenied):
    """A token tried to mint a token wider than itself (``reasons`` names each widening)."""

    def __init__(self, message: str, reasons: tuple[str, ...]):
        super().__init__(message)
        self.reasons = reasons


class MintingTokenInvalid(PermissionDenied):
    """The token acting as minter is unknown, revoked or expired."""


class CustomerKeyRefused(FailedPrecondition):
    """A customer-managed key cannot be used for this tenant (tier, or the key failed its
    test encrypt and decrypt)."""


class SignInRefused(PermissionDenied):
    """A sign-in was refused. The caller (the gateway) shows one generic answer whatever the
    ``why``; ``why`` goes to the audit trail (domain-not-allowed, no-account, inactive, …)."""

    reason = "sign-in-refused"

    def __init__(self, why: str):
        super().__init__("sign-in refused")
        self.why = why


# -- local sign-in (identity/signin; part "local" of issue 12) ---------------------------------


class InvalidInvitation(InvalidArgument):
    """An invitation request is malformed (role, origin)."""


class InvitationNotFound(NotFound):
    """No such invitation, or a link that is not usable (the same answer for every reason)."""


class InvitationRoleDenied(PermissionDenied):
    """The inviter may not grant the role (only owners invite owners)."""


class UserInactive(FailedPrecondition):
    """The user is deactivated."""


class SignInFailed(Unauthenticated):
    """A password sign-in was refused. One message for every reason (unknown account, wrong
    password, lockout, SSO-only tenant, deactivated user): the audit trail says which."""

    MESSAGE = "The email or password is not right, or this account cannot sign in this way."

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


# -- SAML single sign-on (sso/saml) --------------------------------------------------------


class InvalidSamlConfig(InvalidArgument):
    """A SAML IdP configuration or metadata field is not acceptable (the message names it)."""


class SamlNotConfigured(FailedPrecondition):
    """The tenant has no SAML IdP configured."""


class MalformedSamlResponse(InvalidArgument):
    """A posted SAML message is not one we read: not base64, too large, not XML, a DTD or
    entity declarations (XXE, billion laughs), comments or processing instructions inside,
    another root element. ``cause`` names which, for the audit trail."""

    def __init__(self, cause: str):
        self.cause = cause
        super().__init__("the SAML response is malformed")


class SamlResponseRefused(PermissionDenied):
    """A well-formed SAML Response that does not sign anyone in: bad or missing signature,
    wrong audience, recipient, destination or issuer, expired, replayed, unsolicited, or
    answering a request we did not issue. ``cause`` (for the audit trail) says which; the
    caller is told only that the response was refused."""

    def __init__(self, cause: str):
        self.cause = cause
        super().__init__("the SAML response was refused")


class SamlMetadataUnavailable(FailedPrecondition):
    """The IdP metadata URL could not be fetched (unreachable, refused, too large, slow)."""


# -- OIDC sign-in (issue 12, item 4: identity/sso/oidc) -------------------------------------


class InvalidOidcConfig(InvalidArgument):
    """An OIDC provider configuration, or a value the edge passed, is not acceptable (the
    message names the field, never a secret)."""


class OidcProviderNotFound(NotFound):
    """The tenant has no enabled configuration for this OIDC provider."""


class OidcRefused(SignInRefused):
    """An OIDC callback was refused before sign-in was asked: the protocol's checks (state,
    token, claims; rules.py names each ``why``). One generic answer, as every refusal."""


class IdpUnavailable(Unavailable):
    """The tenant's OIDC provider could not be reached, or answered what no provider may
    (``why``, for the audit trail): the sign-in may be retried later."""

    def __init__(self, why: str):
        super().__init__("the identity provider is not reachable; try again later")
        self.why = why


# -- verified domains and named external collaborators (issue 12, domains part) -------------


class InvalidDomain(InvalidArgument):
    """A domain name that cannot be a tenant's (the message names why)."""


class DomainChallengeMissing(FailedPrecondition):
    """The challenge's TXT record is not in DNS (no such name, or no TXT record there)."""

    reason = "domain-challenge-missing"


class DomainChallengeMismatch(FailedPrecondition):
    """TXT records are published at the challenge's name, but none has the expected value."""

    reason = "domain-challenge-mismatch"


class DomainDnsUnavailable(FailedPrecondition):
    """The resolvers gave no usable answer in time (timeout, SERVFAIL, refused): try again."""

    reason = "domain-dns-unavailable"


class InvalidCollaborator(InvalidArgument):
    pass


class CollaboratorNotFound(NotFound):
    pass


class TooManyDomains(FailedPrecondition):
    """The tenant has as many domains (verified and pending) as it may have."""


class TooManyPendingLogins(ResourceExhausted):
    """This client has as many unfinished SSO logins as it may (identity/sso/pending.py)."""


# -- MFA factors (identity/mfa) -------------------------------------------------------------


class InvalidTotpCode(InvalidArgument):
    """A TOTP code as typed is not the expected number of ASCII digits (mfa/totp.py)."""


class InvalidRecoveryCode(InvalidArgument):
    """A recovery code as typed is too long, or not 12 characters of its alphabet."""


class InvalidMfaPolicy(InvalidArgument):
    """A tenant MFA policy value out of range (mfa/policy.py)."""


class MfaEnrolmentOverdue(SignInRefused):
    """The MFA policy covers this user, who has no factor, and the enrolment period is over."""


class InvalidPasskey(InvalidArgument):
    """A WebAuthn response that cannot be read (bad JSON, base64url, CBOR, unknown fields)."""


class PasskeyRefused(PermissionDenied):
    """A WebAuthn response that does not verify: wrong challenge, origin or RP id, bad
    signature, user verification missing when required, an unknown credential
    (``reason`` says which, for the audit trail; the caller is told only that it failed)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class PasskeyCloned(PasskeyRefused):
    """The authenticator's signature counter went backwards (or stayed) while it counts: the
    credential may have been cloned (WebAuthn L2 section 6.1.1); it is flagged and refused."""

    def __init__(self, message: str):
        super().__init__(message, "sign-count-regression")


class MfaFactorRequired(FailedPrecondition):
    """The MFA policy requires a factor of this user: the last one cannot be removed."""


class MfaNotEnrolled(FailedPrecondition):
    """The user has no such factor (a TOTP code for a user without TOTP, say)."""


class RecentSignInRequired(PermissionDenied):
    """The action needs a sign-in (or step-up) within the last few minutes (an admin's
    reset of another user's factors)."""


class TotpAlreadyEnrolled(AlreadyExists):
    """The user has a confirmed TOTP already (one per user; remove it to set up another)."""


class MfaStageRequired(FailedPrecondition):
    """The session is not at the stage this MFA step belongs to (a step-up code for a
    session that is complete, say)."""


class PasskeyNotFound(NotFound):
    """The user has no passkey of that id."""
