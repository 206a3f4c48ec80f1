from datetime import UTC, datetime

import pytest
from starlette.responses import PlainTextResponse

from ontrackio.gateway.securitytxt import SecurityTxtMiddleware, render_security_txt

EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_render_has_rfc9116_fields():
    text = render_security_txt(
        contact=["mailto:security@ontrack.io", "https://ontrack.io/security"],
        expires=EXPIRES,
        policy="https://ontrack.io/disclosure",
        preferred_languages=["en", "de"],
    )
    assert text == (
        "Contact: mailto:security@ontrack.io\n"
        "Contact: https://ontrack.io/security\n"
        "Expires: 2030-01-02T03:04:05Z\n"
        "Policy: https://ontrack.io/disclosure\n"
        "Preferred-Languages: en, de\n"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contact": []},
        {"contact": ["http://insecure.example"]},
        {"contact": ["mailto:a@b"], "policy": "http://x"},
        {"contact": ["mailto:a@b"], "expires": datetime(2030, 1, 1)},
    ],
)
def test_render_refuses_bad_values(kwargs):
    with pytest.raises(ValueError):
        render_security_txt(**{"expires": EXPIRES, **kwargs})


def test_served_on_any_host_before_the_app(asgi):
    app = SecurityTxtMiddleware(PlainTextResponse("app"), text="Contact: mailto:a@b\n")
    result = asgi(app, "/.well-known/security.txt", host="unknown.example")
    assert result.status == 200
    assert result.body == b"Contact: mailto:a@b\n"
    assert result.content_type.startswith("text/plain")
    assert asgi(app, "/other").body == b"app"


def test_other_methods_are_405_problem(asgi):
    app = SecurityTxtMiddleware(PlainTextResponse("app"), text="x")
    result = asgi(app, "/.well-known/security.txt", method="POST")
    assert result.status == 405
    assert result.is_problem
    assert result.header("allow") == "GET, HEAD"
