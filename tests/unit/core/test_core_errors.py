"""Domain errors carry a kind; one table in the gRPC layer maps kinds to status codes."""

from __future__ import annotations

import grpc
import pytest

from ontrackio.core import errors, grpcstatus
from ontrackio.core.db.pools import PoolTimeout
from ontrackio.core.events import InvalidEvent
from ontrackio.core.tenancy import InvalidSlug
from ontrackio.identity import errors as identity_errors

C = grpc.StatusCode


@pytest.mark.parametrize(
    "exc, code",
    [
        (errors.DomainError("x"), C.INTERNAL),
        (errors.InvalidArgument("x"), C.INVALID_ARGUMENT),
        (errors.NotFound("x"), C.NOT_FOUND),
        (errors.AlreadyExists("x"), C.ALREADY_EXISTS),
        (errors.FailedPrecondition("x"), C.FAILED_PRECONDITION),
        (errors.PermissionDenied("x"), C.PERMISSION_DENIED),
        (errors.Unauthenticated("x"), C.UNAUTHENTICATED),
        (errors.Unavailable("x"), C.UNAVAILABLE),
        (errors.ResourceExhausted("x"), C.RESOURCE_EXHAUSTED),
        (InvalidSlug("x"), C.INVALID_ARGUMENT),
        (InvalidEvent("x"), C.INVALID_ARGUMENT),
        (PoolTimeout("x"), C.UNAVAILABLE),
        (identity_errors.TenantExists("x"), C.ALREADY_EXISTS),
        (identity_errors.DomainTaken("x"), C.ALREADY_EXISTS),
        (identity_errors.TenantNotFound("x"), C.NOT_FOUND),
        (identity_errors.BadTransition("x"), C.FAILED_PRECONDITION),
        (identity_errors.InvalidTenant("x"), C.INVALID_ARGUMENT),
        (identity_errors.UserNotFound("x"), C.NOT_FOUND),
        (identity_errors.UserExists("x"), C.ALREADY_EXISTS),
        (identity_errors.InvalidUser("x"), C.INVALID_ARGUMENT),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v.name,
)
def test_status_for_maps_domain_error_to_its_code(exc, code):
    assert grpcstatus.status_for(exc)[0] is code


def test_domain_error_message_is_passed_to_the_caller():
    assert grpcstatus.status_for(errors.NotFound("tenant acme not found")) == (
        C.NOT_FOUND,
        "tenant acme not found",
    )


@pytest.mark.parametrize("exc", [ValueError("password=hunter2"), KeyError("x"), RuntimeError()])
def test_unexpected_error_is_internal_without_its_message(exc):
    assert grpcstatus.status_for(exc) == (C.INTERNAL, "internal error")


def test_every_kind_has_a_status_code():
    assert set(grpcstatus.STATUS_OF_KIND) == set(errors.Kind)


def test_domain_modules_do_not_import_grpc():
    """Domain rules stay transport-free: errors name kinds, not gRPC codes."""
    import ast
    from pathlib import Path

    import ontrackio

    root = Path(ontrackio.__file__).parent
    offenders = []
    for path in [
        root / "core" / "errors.py",
        *root.glob("*/errors.py"),
        *root.glob("*/domain/*.py"),
    ]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] in ("grpc", "psycopg", "kombu") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
