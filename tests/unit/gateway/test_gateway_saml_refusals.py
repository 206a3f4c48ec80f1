"""The browser's answer to a refused SAML sign-in (gateway/api/saml.py): one page or one
problem, the same words whatever identity's reason; outages are not refusals."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from starlette.datastructures import Headers

from ontrackio.gateway.api import saml
from ontrackio.gateway.api.operation import Call

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


class _Error(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class _Upstream:
    """Stands in for identity's SamlService (outside the gateway's boundary)."""

    def __init__(self, error: grpc.aio.AioRpcError):
        self.error = error
        self.saml = self
        self.ConsumeResponse = self.StartLogin = object()

    async def call(self, method, request, **kw):
        raise self.error


class _Services:
    secure_cookies = True

    def __init__(self, error):
        self.upstream = _Upstream(error)

    def canonical_origin(self, slug: str) -> str:
        return f"https://{slug}.ontrack.test"

    async def rpc(self, call, method, request):
        return await self.upstream.call(method, request)


def _call(accept: str | None) -> Call:
    raw = [(b"accept", accept.encode())] if accept is not None else []
    return Call(
        "acme",
        None,
        None,
        {"next": "/"},
        {"SAMLResponse": "PHg+"},
        headers=Headers(raw=raw),
    )


def _consume(code, details, accept):
    return asyncio.run(saml.consume(_call(accept), _Services(_Error(code, details))))


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        (BROWSER, True),
        ("text/html", True),
        (None, False),
        ("*/*", False),
        ("application/json", False),
        ("application/problem+json, text/html;q=0.5", False),
        ("text/html;q=0.5, application/problem+json", False),
        ("text/html, application/problem+json;q=0.9", True),
        ("garbage;;", False),
    ],
)
def test_a_page_exactly_when_html_is_preferred(accept, page):
    raw = [(b"accept", accept.encode())] if accept is not None else []
    assert saml.wants_page(Headers(raw=raw)) is page


CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
}


@pytest.mark.parametrize("code", list(CODES))
def test_every_refusal_says_the_same_thing_and_never_identitys_words(code):
    secret = "no-account domain-not-allowed replayed the SAML response is malformed"
    page = _consume(code, secret, BROWSER)
    assert page.status_code == CODES[code]
    assert page.headers["content-type"].startswith("text/html")
    html = page.body.decode()
    assert "did not sign you in" in html and 'href="/signin"' in html
    for word in secret.split():
        assert word not in html.lower() or word in saml.SSO_REFUSED.lower()
    assert page.headers["cache-control"] == "no-store"
    # the binding cookie of the sign-in is cleared, whatever the answer
    cleared = [h for h in page.headers.getlist("set-cookie") if h.startswith(saml.BINDING_COOKIE)]
    assert len(cleared) == 1 and "Max-Age=0" in cleared[0] and "SameSite=none" in cleared[0]

    api = _consume(code, secret, None)
    assert api.status_code == CODES[code]
    assert api.headers["content-type"] == "application/problem+json"
    body = json.loads(api.body)
    assert body["detail"] == saml.SSO_REFUSED and body["status"] == CODES[code]


def test_the_answer_does_not_depend_on_the_reason():
    a = _consume(grpc.StatusCode.PERMISSION_DENIED, "sign-in refused", BROWSER)
    b = _consume(grpc.StatusCode.PERMISSION_DENIED, "the SAML response was refused", BROWSER)
    assert a.body == b.body
    c = _consume(grpc.StatusCode.PERMISSION_DENIED, "sign-in refused", None)
    d = _consume(grpc.StatusCode.PERMISSION_DENIED, "the SAML response was refused", None)
    assert c.body == d.body


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL],
)
def test_an_outage_is_not_a_refusal(code):
    with pytest.raises(grpc.aio.AioRpcError):
        _consume(code, "down", BROWSER)


def test_login_without_saml_configured_is_the_same_page_for_a_browser():
    error = _Error(grpc.StatusCode.FAILED_PRECONDITION, "SAML single sign-on is not configured")
    r = asyncio.run(saml.login(_call(BROWSER), _Services(error)))
    assert r.status_code == 409 and "did not sign you in" in r.body.decode()
    other = _Error(grpc.StatusCode.PERMISSION_DENIED, "x")
    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(saml.login(_call(BROWSER), _Services(other)))


def test_importing_metadata_without_xml_or_url_is_a_400_not_a_500():
    c = Call(
        "acme", None, None, {}, {"entity_id": "https://idp.example/x"}, headers=Headers(raw=[])
    )
    r = asyncio.run(saml.import_metadata(c, _Services(_Error(grpc.StatusCode.INTERNAL, "x"))))
    assert r.status_code == 400 and "xml" in json.loads(r.body)["detail"]
