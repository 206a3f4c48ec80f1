"""Route declarations: one ``Operation`` per method and path, the source of both the Starlette
routes and the OpenAPI 3.1 document, so the document covers every route by construction.

Request bodies and query parameters are checked against the same schemas the document
publishes (``validate``: the small JSON Schema subset the declarations use).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}
ERROR_TEXT = {
    400: "The request is malformed (body, JSON depth, parameters).",
    401: "A valid API token is required.",
    403: "The token lacks the scope, or the address is not on the admin allowlist.",
    404: "No such resource (or no such tenant host).",
    409: "The change conflicts with the current state.",
    413: "The request body is too large.",
    429: "Too many requests; see Retry-After.",
    502: "A service behind the gateway failed.",
    503: "A service behind the gateway is unavailable; retry later.",
    504: "A service behind the gateway did not answer in time.",
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Callable[..., Awaitable[Any]]
    scope: str | None  # required token scope; None: no authentication
    response: dict[str, Any]
    status: int = 200
    body: dict[str, Any] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 401, 403, 404, 429, 502, 503, 504)
    tags: tuple[str, ...] = field(default=())


def document(operations: list[Operation], *, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": list(op.tags),
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.params
            ],
            "responses": {
                str(op.status): {
                    "description": "Success.",
                    "content": {"application/json": {"schema": op.response}},
                },
                **{
                    str(code): {"$ref": f"#/components/responses/E{code}"}
                    for code in sorted(set(op.errors) | {400, 413, 429, 502})
                },
            },
            "security": [{"bearer": [op.scope]}] if op.scope else [],
        }
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": op.body}},
            }
            item["responses"].setdefault("413", {"$ref": "#/components/responses/E413"})
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The OnTrackio API. Every error is application/problem+json.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "otk_<id>_<secret>",
                    "description": "API token; scopes: api:read, api:write, admin, scim.",
                }
            },
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "responses": {
                f"E{code}": {
                    "description": text,
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                }
                for code, text in ERROR_TEXT.items()
            },
        },
    }


class Invalid(ValueError):
    """A value does not match its schema; the message names where."""


def validate(value: Any, schema: dict[str, Any], where: str = "body") -> Any:
    """Check ``value`` against ``schema`` (type, properties, required, additionalProperties,
    enum, pattern, min/maxLength, items, maxItems, minimum/maximum); raise Invalid."""
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind is not None and not checks[kind](value):
        raise Invalid(f"{where} must be of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(f"{where} must be one of {', '.join(map(str, schema['enum']))}")
    if kind == "string":
        if len(value) < schema.get("minLength", 0):
            raise Invalid(f"{where} must be at least {schema['minLength']} characters")
        if len(value) > schema.get("maxLength", 1 << 30):
            raise Invalid(f"{where} must be at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise Invalid(f"{where} is not in the expected format")
    if kind == "integer" and not (
        schema.get("minimum", -(1 << 63)) <= value <= schema.get("maximum", 1 << 63)
    ):
        raise Invalid(
            f"{where} must be between {schema.get('minimum')} and {schema.get('maximum')}"
        )
    if kind == "array":
        if len(value) > schema.get("maxItems", 1 << 30):
            raise Invalid(f"{where} must have at most {schema['maxItems']} items")
        if len(value) < schema.get("minItems", 0):
            raise Invalid(f"{where} must have at least {schema['minItems']} items")
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{where}[{i}]")
    if kind == "object":
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise Invalid(f"{where}.{name} is required")
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                raise Invalid(f"{where} has unknown field(s): {', '.join(extra)}")
        for name, sub in props.items():
            if name in value:
                validate(value[name], sub, f"{where}.{name}")
    return value
