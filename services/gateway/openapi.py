"""The OpenAPI 3.1 document, built from the operation declarations (api/operation.py), so it
covers every route by construction; and ``validate``, the JSON Schema subset they use.

Request bodies and parameters are checked against the same schemas the document publishes.
"""

from __future__ import annotations

import re
from typing import Any

from ontrackio.gateway.api.operation import AuthKind, BodyKind, ErrorFormat, Operation
from ontrackio.gateway.auth.session import SESSION_COOKIE

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
    401: "A valid API token (or session) is required.",
    403: "The token lacks the scope, or the address is not on the admin allowlist.",
    404: "No such resource (or no such tenant host).",
    409: "The change conflicts with the current state.",
    413: "The request body is too large.",
    415: "The body is not of a media type this operation takes.",
    422: "Understood, but what it asks for cannot be done as things are (e.g. the DNS "
    "challenge is not published); the problem's type says why.",
    429: "Too many requests; see Retry-After.",
    502: "A service behind the gateway failed.",
    503: "A service behind the gateway is unavailable; retry later.",
    504: "A service behind the gateway did not answer in time.",
}


SCIM_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 7644 3.12 SCIM error.",
    "properties": {
        "schemas": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string"},
        "scimType": {"type": "string"},
        "detail": {"type": "string"},
    },
    "required": ["schemas", "status"],
}
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "otk_<id>_<secret>",
        "description": "API token; scopes: api:read, api:write, admin, scim.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "A signed-in user's session; its roles grant the scopes listed"
        " (owner, admin: every scope; member: api:read, api:write; auditor: api:read,"
        " audit:read). Unsafe methods also need the X-CSRF-Token header (GET /api/v1/session"
        " gives it) and an Origin of this host.",
    },
}


def _security(op: Operation) -> list[dict[str, list[str]]]:
    if op.auth.kind is AuthKind.BEARER:
        return [{"bearer": list(op.auth.scopes)}]
    if op.auth.kind is AuthKind.SESSION:
        return [{"session": []}]
    if op.auth.kind is AuthKind.CREDENTIAL:  # either; the session's roles must grant the scopes
        return [{"bearer": list(op.auth.scopes)}, {"session": list(op.auth.scopes)}]
    return []


def _request_body(op: Operation) -> dict[str, Any] | None:
    body = op.body
    if body.kind is BodyKind.NONE:
        return None
    if body.kind is BodyKind.UPLOAD:
        content = {
            m: {"schema": {"type": "string", "contentMediaType": m}} for m in body.media_types
        }
    else:
        content = {m: {"schema": body.schema or {}} for m in body.media_types}
    return {"required": not body.optional, "content": content}


def _answers_html(op: Operation) -> bool:
    """Pages, and sign-in steps a browser follows: their refusals are pages for a browser
    (and problems for everyone else, and for what the edge refuses before them)."""
    return op.response_media_type == "text/html" or "text/html" in op.also_answers


def _error_response(op: Operation, code: int) -> dict[str, Any]:
    if op.errors is ErrorFormat.PROBLEM and _answers_html(op):
        return {
            "description": ERROR_TEXT.get(code, "Error."),
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
            },
        }
    if op.errors is ErrorFormat.PROBLEM:
        return {"$ref": f"#/components/responses/E{code}"}
    return {
        "description": ERROR_TEXT.get(code, "Error."),
        "content": {
            op.errors.value: {"schema": {"$ref": "#/components/schemas/ScimError"}},
        },
    }


def _sign_in_redirect(op: Operation) -> dict[str, Any]:
    """A page that needs a session sends a browser without one to sign in (and back)."""
    if op.auth.accepts_session and op.response_media_type == "text/html" and op.method == "GET":
        return {
            "303": {
                "description": "Not signed in: to /signin, which comes back here afterwards.",
                "headers": {"Location": {"schema": {"type": "string"}}},
            }
        }
    return {}


def document(operations: list[Operation], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document: per operation its parameters, request media types and
    schemas, security (bearer scopes or the session cookie), success and error responses in
    the operation's error format."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        codes = set(op.error_codes) | {400, 413, 429, 502}
        if op.body.kind is not BodyKind.NONE:
            codes.add(415)
        if op.auth.kind is not AuthKind.PUBLIC:
            codes.add(401)
        success: dict[str, Any] = {
            "description": "Success.",
            "content": {
                op.response_media_type: {"schema": op.response},
                **{m: {"schema": {"type": "string"}} for m in op.also_answers},
            },
        }
        if op.links:
            success["links"] = {
                name: {"operationId": target, "parameters": dict(params)}
                for name, (target, params) in op.links.items()
            }
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
                str(op.status): success,
                **{str(code): _error_response(op, code) for code in sorted(codes)},
                **_sign_in_redirect(op),
            },
            "security": _security(op),
        }
        if op.admin:
            item["x-admin"] = True
        request_body = _request_body(op)
        if request_body is not None:
            item["requestBody"] = request_body
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The OnTrackio API. Errors are application/problem+json, except "
            "on SCIM operations (application/scim+json, RFC 7644).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "schemas": {"Problem": PROBLEM_SCHEMA, "ScimError": SCIM_ERROR_SCHEMA},
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


_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(value: Any, schema: dict[str, Any], where: str = "body") -> Any:
    """Check ``value`` against ``schema`` (type — one, or a list such as ``["string",
    "null"]`` —, properties, required, additionalProperties, enum, pattern, min/maxLength,
    items, maxItems, minimum/maximum); raise Invalid."""
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        kind = next((k for k in kinds if _TYPE_CHECKS[k](value)), None)
        if kind is None:
            raise Invalid(f"{where} must be of type {' or '.join(kinds)}")
        if kind == "null":
            return value
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
