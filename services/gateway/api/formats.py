"""Error bodies in an operation's declared format: problem+json, or SCIM's error message.

Every refusal inside the endpoint is first built as a problem (problems.py); ``render`` turns
it into the operation's format, keeping status and headers (Retry-After, WWW-Authenticate,
Allow). The problem guard leaves ``application/scim+json`` error bodies as they are.
"""

from __future__ import annotations

import json

from starlette.responses import JSONResponse, Response

from ontrackio.gateway.api.operation import ErrorFormat
from ontrackio.gateway.problems import MAX_DETAIL_CHARS, ProblemResponse

SCIM_ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SCIM_MEDIA_TYPE = ErrorFormat.SCIM.value
# RFC 7644 3.12 scimType keywords for the statuses the gateway itself decides.
_SCIM_TYPES = {400: "invalidValue", 409: "uniqueness", 413: "tooMany"}
_KEPT_HEADERS = ("retry-after", "www-authenticate", "allow", "connection", "cache-control")


class ScimResponse(JSONResponse):
    media_type = SCIM_MEDIA_TYPE


def scim_error(
    status: int,
    detail: str | None = None,
    *,
    scim_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> ScimResponse:
    """An RFC 7644 error message (``status`` is a string there, by the RFC)."""
    body: dict[str, object] = {"schemas": [SCIM_ERROR_SCHEMA], "status": str(status)}
    kind = scim_type or _SCIM_TYPES.get(status)
    if kind:
        body["scimType"] = kind
    if detail:
        body["detail"] = detail[:MAX_DETAIL_CHARS]
    return ScimResponse(body, status_code=status, headers=headers)


def render(fmt: ErrorFormat, response: Response) -> Response:
    """``response`` as the operation answers it: unchanged unless it is a problem and the
    operation speaks SCIM."""
    if fmt is ErrorFormat.PROBLEM or not isinstance(response, ProblemResponse):
        return response
    problem = json.loads(response.body)
    headers = {k: v for k, v in response.headers.items() if k in _KEPT_HEADERS}
    return scim_error(response.status_code, problem.get("detail"), headers=headers)
