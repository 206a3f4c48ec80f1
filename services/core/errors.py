"""Domain errors shared by every service, and the one table mapping them to gRPC codes.

Each service's own errors.py subclasses these; entrypoints never choose status codes.
"""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """A failure the caller can act on; its message is safe to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class EventRefused(FailedPrecondition):
    """An event its handler must not act on (the registry contradicts it): never retried,
    parked in the dead-letter queue at once, where an operator can inspect or replay it."""


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(DomainError):
    """Transient: the caller may retry (a database or the broker is unreachable)."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and safe detail for an exception raised by a handler."""
    if isinstance(exc, DomainError):
        return exc.code, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"
