"""Identity's domain errors (status codes come from the shared table in core.errors)."""

from ontrackio.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound


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
