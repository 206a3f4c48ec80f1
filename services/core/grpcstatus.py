"""The one table from a domain error's kind to the gRPC status the caller receives."""

from __future__ import annotations

import grpc

from ontrackio.core.errors import DomainError, Kind

STATUS_OF_KIND: dict[Kind, grpc.StatusCode] = {kind: grpc.StatusCode[kind.name] for kind in Kind}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and safe detail for an exception raised by a handler: a domain error's
    kind and message; anything else is INTERNAL with a generic detail (never its message)."""
    if isinstance(exc, DomainError):
        return STATUS_OF_KIND[exc.kind], str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"
