"""Request bodies by declared kind: JSON, SCIM JSON, forms and streamed uploads, with limits.

``read_body`` returns what the handler gets as ``Call.body``; every refusal is an
HTTPException (400 malformed, 413 too large, 415 wrong media type) that the endpoint renders
in the operation's error format. The edge's MAX_BODY_BYTES applies on top of every limit here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ontrackio.gateway.api.operation import Body, BodyKind
from ontrackio.gateway.limits import BodyTooLarge, loads_limited
from ontrackio.gateway.openapi import Invalid, validate
from ontrackio.gateway.text import UnsafeText, check_text


class UnsupportedMediaType(HTTPException):
    def __init__(self, media_types: tuple[str, ...]) -> None:
        super().__init__(
            415, detail=f"The body must be sent as Content-Type: {' or '.join(media_types)}."
        )


class InvalidBody(HTTPException):
    """The body parsed but is not what the operation takes (400, the message says why)."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, detail=detail)


def media_type(request: Request) -> str | None:
    """The Content-Type without parameters, lower-cased; None if absent or given twice."""
    values = request.headers.getlist("content-type")
    if len(values) != 1:
        return None
    return values[0].split(";", 1)[0].strip().lower()


async def stream_limited(request: Request, max_bytes: int | None) -> AsyncIterator[bytes]:
    """The body chunk by chunk as it arrives; BodyTooLarge once more than ``max_bytes`` came."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if max_bytes is not None and received > max_bytes:
            raise BodyTooLarge(max_bytes)
        if chunk:
            yield chunk


async def read_limited(request: Request, max_bytes: int | None) -> bytes:
    return b"".join([chunk async for chunk in stream_limited(request, max_bytes)])


def parse_form(raw: bytes, max_fields: int) -> dict[str, str]:
    """An urlencoded form as ``{name: value}``; InvalidBody when malformed.

    Refused: invalid UTF-8 (raw or percent-encoded), more than ``max_fields`` fields, a field
    given twice, NUL or lone surrogates in names or values.
    """
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=max_fields)
    except UnicodeDecodeError as exc:
        raise InvalidBody("The form is not valid UTF-8.") from exc
    except ValueError as exc:  # parse_qsl's "Max number of fields exceeded"
        raise InvalidBody(f"The form has more than {max_fields} fields.") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        try:
            check_text(name, "a form field name")
            check_text(value, f"form field {name}")
        except UnsafeText as exc:
            raise InvalidBody(f"The form is refused: {exc}.") from exc
        if name in form:
            raise InvalidBody(f"form field {name} may be given once")
        form[name] = value
    return form


async def read_body(body: Body, request: Request, *, max_json_depth: int) -> Any:
    """The value ``Call.body`` carries for this body declaration (see module docstring)."""
    if body.kind is BodyKind.NONE:
        return None
    if body.optional and not request.headers.getlist("content-type"):
        if await read_limited(request, 64):  # a body needs its Content-Type
            raise UnsupportedMediaType(body.media_types)
        return {}
    if media_type(request) not in body.media_types:
        raise UnsupportedMediaType(body.media_types)
    if body.kind is BodyKind.UPLOAD:
        return stream_limited(request, body.max_bytes)
    raw = await read_limited(request, body.max_bytes)
    if not raw:
        raise InvalidBody("The request body is empty.")
    if body.kind is BodyKind.FORM:
        value: Any = parse_form(raw, body.max_fields)
    else:
        value = loads_limited(raw, max_json_depth)
    if body.schema is not None:
        try:
            validate(value, body.schema, "body")
        except Invalid as exc:
            raise InvalidBody(str(exc)) from exc
    return value
