"""Schemas and encoders shared by the resource modules: ids, times, pages."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ontrackio.gateway.api.operation import Call, Param

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
TIME = {"type": ["string", "null"], "format": "date-time"}
ADMIN_ERRORS = (400, 401, 403, 404, 409, 429, 502, 503, 504)

PAGING = (
    Param(
        "page_size",
        "query",
        {"type": "integer", "minimum": 0, "maximum": 500},
        "Items per page (default 50).",
    ),
    Param(
        "page_token",
        "query",
        {"type": "string", "maxLength": 1024},
        "next_page_token of the previous page.",
    ),
)
UUID_ID = Param("id", "path", {"type": "string", "pattern": UUID_PATTERN})


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_page_token"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next_page_token": {"type": "string", "description": "Empty on the last page."},
        },
    }


def page_request(c: Call) -> dict[str, Any]:
    """The pagination query parameters, as the list RPCs take them."""
    return {"page_size": c.params.get("page_size", 0), "page_token": c.params.get("page_token", "")}


def time_json(msg: Any, name: str) -> str | None:
    if not msg.HasField(name):
        return None
    value: Timestamp = getattr(msg, name)
    return value.ToJsonString()
