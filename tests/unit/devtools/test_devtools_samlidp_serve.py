"""The test IdP over HTTP (devtools/samlidp.py ``serve``), as a browser meets it: our login
redirect to its /sso answers a page whose form posts a signed response to our ACS, and that
response is one identity accepts for the request it issued."""

from __future__ import annotations

import html
import re
import urllib.error
import urllib.request

import pytest

from ontrackio.devtools.samlidp import SamlIdP, User
from ontrackio.identity.sso.saml import acs, rules
from ontrackio.identity.sso.saml.api import login_redirect

SP = rules.SpEndpoints.from_origin("http://acme.localhost:8080")
_FORM = re.compile(r'<form method="post" action="([^"]+)">')
_FIELD = re.compile(r'name="(SAMLResponse|RelayState)" value="([^"]*)"')


@pytest.fixture(scope="module")
def served():
    idp = SamlIdP("https://idp.serve.test/metadata", sso_url="https://idp.serve.test/sso")
    try:
        with idp.serve() as base:
            yield idp, base
    finally:
        idp.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_login_redirect_to_the_served_sso_gets_a_form_posting_a_valid_response(served):
    idp, base = served
    assert idp.sso_url == base + "/sso"
    idp.user = User(name_id="ann@acme.example")
    config = rules.validate_config(
        idp_entity_id=idp.entity_id,
        sso_url=idp.sso_url,
        certificates=[idp.signer.cert_pem],
        allow_loopback_http=True,
    )
    url, request_id = login_redirect(config, SP)
    status, page = _get(url)
    assert status == 200, page
    assert _FORM.search(page).group(1) == SP.acs_url
    assert "document.forms[0].submit()" in page and "<button" in page  # script, or a click
    fields = {k: html.unescape(v) for k, v in _FIELD.findall(page)}
    assert fields["RelayState"] == request_id
    verified = acs.verify(fields["SAMLResponse"], config, SP)
    assert verified.in_response_to == request_id
    assert verified.identity.email == "ann@acme.example"


def test_a_request_sent_to_another_sso_url_is_refused(served):
    idp, _ = served
    elsewhere = rules.validate_config(
        idp_entity_id=idp.entity_id,
        sso_url="https://idp.serve.test/sso",  # not where this IdP is served
        certificates=[idp.signer.cert_pem],
    )
    url, _ = login_redirect(elsewhere, SP)
    status, page = _get(idp.sso_url + "?" + url.split("?", 1)[1])
    assert status == 400 and "bad AuthnRequest" in page
