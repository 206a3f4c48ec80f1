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
    """A failure the caller can act on; its message is safe to show to the caller."""

    kind: Kind = Kind.INTERNAL


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


class PermissionDenied(DomainError):
    kind = Kind.PERMISSION_DENIED


class Unauthenticated(DomainError):
    kind = Kind.UNAUTHENTICATED


class Unavailable(DomainError):
    """Transient: the caller may retry (a database or the broker is unreachable)."""

    kind = Kind.UNAVAILABLE


class ResourceExhausted(DomainError):
    kind = Kind.RESOURCE_EXHAUSTED
