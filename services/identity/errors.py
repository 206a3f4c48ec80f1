"""Identity's domain errors (status codes come from the shared table in core.errors)."""

from ontrackio.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
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
