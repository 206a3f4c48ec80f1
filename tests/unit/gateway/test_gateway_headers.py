from starlette.responses import HTMLResponse, JSONResponse

from ontrackio.gateway.headers import SecurityHeadersMiddleware

CSP = "default-src 'none'; frame-ancestors 'none'"


def test_headers_on_plain_http_without_hsts(asgi):
    result = asgi(SecurityHeadersMiddleware(HTMLResponse("<p>hi</p>")))
    assert result.header("x-content-type-options") == "nosniff"
    assert result.header("x-frame-options") == "DENY"
    assert result.header("referrer-policy") == "no-referrer"
    assert result.header("content-security-policy") == CSP
    assert result.header("strict-transport-security") is None


def test_hsts_only_over_tls(asgi):
    result = asgi(SecurityHeadersMiddleware(JSONResponse({}), hsts_max_age=600), scheme="https")
    assert result.header("strict-transport-security") == "max-age=600; includeSubDomains"
    assert result.header("content-security-policy") == CSP


def test_headers_set_by_the_app_win_and_are_not_duplicated(asgi):
    app = JSONResponse({}, headers={"X-Frame-Options": "SAMEORIGIN"})
    result = asgi(SecurityHeadersMiddleware(app))
    assert [v for k, v in result.headers if k == b"x-frame-options"] == [b"SAMEORIGIN"]
