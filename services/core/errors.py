"""Domain errors shared by every service, each carrying the kind of failure it is.

Each service's own errors.py subclasses these; domain code raises them and knows nothing of
transports. The gRPC layer turns a kind into a status code (``core/grpcstatus.py``), the
gateway turns that into an HTTP status: entrypoints never choose codes.
"""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    """What the caller should make of a failure (named after the gRPC codes they become)."""

    INTERNAL = "internal"
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    FAILED_PRECONDITION = "failed_precondition"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    UNAVAILABLE = "unavailable"
    RESOURCE_EXHAUSTED = "resource_exhausted"


class DomainError(Exception):
    """A failure the caller can act on; its message is safe to show to the caller.

    `reason`, when set, names this failure more precisely than its kind: it travels with
    the status (gRPC trailing metadata ``ontrack-reason``) so that the gateway can answer
    it with a problem type of its own (gateway/problems.py, REASONS)."""

    kind: Kind = Kind.INTERNAL
    reason: str | None = None


class InvalidArgument(DomainError):
    kind = Kind.INVALID_ARGUMENT


class NotFound(DomainError):
    kind = Kind.NOT_FOUND


class AlreadyExists(DomainError):
    kind = Kind.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    kind = Kind.FAILED_PRECONDITION


class EventRefused(FailedPrecondition):
    """An event its handler must not act on (the registry contradicts it): never retried,
    parked in the dead-letter queue at once, where an operator can inspect or replay it."""


class KeyUnavailable(FailedPrecondition):
    """A tenant's key cannot be used now: the KMS key is disabled, scheduled for deletion,
    its grant revoked, or the KMS unreachable. That tenant's encrypted fields fail closed
    until the key is usable again (no refused key is used; keys unwrapped before stay
    cached for the data key cache time, core/keys/ring.py); other tenants are not
    affected. `cause` is one of CAUSES, for metrics and the audit trail."""

    reason = "tenant-key-unavailable"
    CAUSES = (
        "disabled",
        "pending_deletion",
        "access_denied",
        "not_found",
        "unreachable",
        "invalid",
    )

    def __init__(self, cause: str):
        self.cause = cause if cause in self.CAUSES else "invalid"
        super().__init__(f"tenant key unavailable ({self.cause.replace('_', ' ')})")


class FieldUnreadable(FailedPrecondition):
    """A stored encrypted field does not open (core/keys/fields.py): it is not in a format
    this code writes, or it fails authentication (tampered, sealed under another key, or
    copied from another row, column, table or tenant). Not retried: the stored value itself
    is at fault. `cause` is one of CAUSES; the message never includes the value."""

    CAUSES = ("too_short", "unknown_format", "bad_version", "not_authentic", "not_text")

    def __init__(self, cause: str):
        self.cause = cause if cause in self.CAUSES else "not_authentic"
        super().__init__(f"encrypted field cannot be read ({self.cause.replace('_', ' ')})")


class PermissionDenied(DomainError):
    kind = Kind.PERMISSION_DENIED


class Unauthenticated(DomainError):
    kind = Kind.UNAUTHENTICATED


class Unavailable(DomainError):
    """Transient: the caller may retry (a database or the broker is unreachable)."""

    kind = Kind.UNAVAILABLE


class ResourceExhausted(DomainError):
    kind = Kind.RESOURCE_EXHAUSTED
