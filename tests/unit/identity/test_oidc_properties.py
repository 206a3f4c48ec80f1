"""Properties of the OIDC rules at the edge: the callback's query values, the admin's
configuration and any claims a token may carry are either accepted as an independent
reading of the rule says, or refused with the rule's own error — never anything else.

The callback rule (rules.parse_callback): the state is 43 characters of [A-Za-z0-9_-] (we
issue ``token_urlsafe(32)``); then an ``error`` wins (kept when 1 to 64 NQSCHARs — RFC 6749
A.7 —, else named "invalid-error-code"; its description as a printable excerpt of at most
300 characters), else the code is 1 to 4096 VSCHARs (A.11) and ``iss``, when given, at
most 2048 VSCHARs.
"""

from __future__ import annotations

import re
import string

from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.identity.errors import InvalidOidcConfig, OidcRefused
from ontrackio.identity.sso.oidc import rules
from tests.unit.gateway.strategies import PROPERTY

URLSAFE = string.ascii_letters + string.digits + "_-"
VSCHAR = "".join(chr(c) for c in range(0x20, 0x7F))
ATOMS = [
    "", " ", "\x00", "\x7f", "\n", "\r\n", "%00", "%0a", "\u00e9", "\u202e", "\ufeff",
    "\ud800", "\U0001f600", "=", "&", "#", "?", "+", "\\", '"', "'", "<script>", "..",
    "access_denied", "invalid_request", "A" * 43, "-" * 43, "_" * 42,
]  # fmt: skip
text = st.one_of(
    st.sampled_from(ATOMS),
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(ATOMS), st.text(max_size=5)), max_size=8).map("".join),
    st.text(alphabet=URLSAFE, min_size=42, max_size=44),
    st.text(alphabet=VSCHAR, min_size=1, max_size=80),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\x7f", " "]), st.integers(4090, 4100)),
)


def vschars(s: str, lo: int, hi: int) -> bool:
    return lo <= len(s) <= hi and all(0x20 <= ord(c) <= 0x7E for c in s)


def nqschars(s: str) -> bool:
    return 1 <= len(s) <= 64 and all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in s)


@PROPERTY
@given(state=text, code=text, error=text, description=text, iss=text)
@example(state="A" * 43, code="c", error="", description="", iss="")
@example(state="A" * 43, code="", error="access_denied", description="\x00\u202e", iss="")
@example(state="A" * 43, code="a" * 4096, error="", description="", iss="")
def test_the_callback_values_are_accepted_exactly_by_the_rule(state, code, error, description, iss):
    state_ok = bool(re.fullmatch(r"[A-Za-z0-9_-]{43}", state))
    try:
        cb = rules.parse_callback(
            state=state, code=code, error=error, error_description=description, iss=iss
        )
    except OidcRefused as refused:
        assert not state_ok or (
            not error and (not vschars(code, 1, 4096) or (iss and not vschars(iss, 1, 2048)))
        ), refused.why
        return
    assert state_ok and cb.state == state
    if error:
        assert cb.error == (error if nqschars(error) else "invalid-error-code")
        assert len(cb.error_description) <= rules.MAX_ERROR_DESCRIPTION
        assert cb.error_description.isprintable()
        assert cb.code == ""
    else:
        assert vschars(code, 1, 4096) and cb.code == code
        assert not iss or vschars(iss, 1, 2048)


domain = st.one_of(
    st.sampled_from(["acme.example", "ACME.Example.", "a.b", "-a.b", "a..b", "x", "", " a.b "]),
    st.text(alphabet=string.ascii_lowercase + string.digits + ".-", max_size=30),
    text,
)
url = st.one_of(
    st.sampled_from(
        [
            "https://idp.example.com",
            "https://idp.example.com/realms/x",
            "http://idp.example.com",
            "http://127.0.0.1:8080/generic",
            "http://localhost/x",
            "https://[::1]/x",
            "https://idp.example.com:99999",
            "https://u@idp.example.com",
            "https://idp.example.com/#f",
            "https://idp.example.com/?q=1",
            "https:///nohost",
            "",
        ]
    ),
    st.builds(lambda h, p: f"https://{h}{p}", st.text(max_size=20), st.text(max_size=20)),
    text,
)


def is_domain(d: str) -> bool:
    d = d.strip().rstrip(".").lower()
    labels = d.split(".")
    return (
        len(d) <= 253
        and len(labels) >= 2
        and all(re.fullmatch(r"(?!-)[a-z0-9-]{1,63}(?<!-)", label) for label in labels)
    )


@PROPERTY
@given(
    provider=st.sampled_from([*rules.PROVIDERS, "saml", ""]),
    issuer=url,
    client_id=text,
    scopes=st.lists(st.one_of(st.sampled_from(["openid", "email", 'a"b', ""]), text), max_size=4),
    domains=st.lists(domain, max_size=3),
    tenant=st.one_of(st.just(""), st.uuids().map(str), text),
    loopback=st.booleans(),
)
def test_a_configuration_is_valid_or_refused_with_a_reason(
    provider, issuer, client_id, scopes, domains, tenant, loopback
):
    try:
        c = rules.validate_config(
            provider,
            issuer=issuer,
            client_id=client_id,
            scopes=scopes,
            hosted_domains=domains,
            entra_tenant=tenant,
            allow_loopback_http=loopback,
        )
    except InvalidOidcConfig as refused:
        assert str(refused) and len(str(refused)) < 200
        return
    assert c.provider in rules.PROVIDERS
    assert c.issuer.startswith("https://") or (
        loopback and rules.is_loopback_host(c.issuer.split("/")[2].rsplit(":", 1)[0])
    )
    assert "#" not in c.issuer and "?" not in c.issuer and "@" not in c.issuer.split("/")[2]
    assert "openid" in c.scopes and len(c.scopes) <= rules.MAX_SCOPES
    assert all(re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", s) for s in c.scopes)
    assert all(is_domain(d) and d == d.lower() for d in c.hosted_domains)
    assert bool(c.hosted_domains) == (c.provider == rules.GOOGLE)
    assert bool(c.entra_tenant) == (c.provider == rules.ENTRA)
    assert 1 <= len(c.client_id) <= rules.MAX_CLIENT_ID and " " not in c.client_id


JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
NOW = 1_800_000_000.0
GOOD = {
    "iss": "https://idp.example.com",
    "aud": "c",
    "exp": NOW + 300,
    "iat": NOW - 5,
    "nonce": "n",
    "sub": "s",
    "email": "a@b.example",
    "email_verified": True,
}
EXTRA = {  # near misses and optional claims, beside any JSON value
    "iss": st.sampled_from(["https://idp.example.com/", "https://IDP.example.com", ""]),
    "aud": st.sampled_from([["c"], ["c", "d"], ["d"], "C", ["c", 1]]),
    "azp": st.sampled_from(["c", "d", ""]),
    "exp": st.floats(NOW - 200, NOW + 200),
    "iat": st.floats(NOW - 200, NOW + 200),
    "nbf": st.floats(NOW - 200, NOW + 200),
    "nonce": st.sampled_from(["N", "n ", ""]),
    "email_verified": st.sampled_from(["true", "TRUE", "false", "yes", 1, False]),
    "amr": st.lists(st.one_of(st.text(max_size=8), JSON), max_size=3),
    "acr": st.one_of(st.text(max_size=8), JSON),
    "name": st.text(max_size=20),
}
NAMES = sorted(set(GOOD) | set(EXTRA))
DROP = object()


@st.composite
def near_valid_claims(draw) -> dict:
    """A valid token's claims with up to three of them changed, dropped or added."""
    claims = dict(GOOD)
    for name in draw(st.sets(st.sampled_from(NAMES), max_size=3)):
        choices = [JSON, st.just(DROP)] + ([EXTRA[name]] if name in EXTRA else [])
        value = draw(st.one_of(*choices))
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


@PROPERTY
@given(near_valid_claims())
@example(dict(GOOD))
@example({**GOOD, "nbf": None})
def test_any_claims_are_believed_only_when_every_rule_holds(claims):
    exp = rules.Expected("oidc", "https://idp.example.com", "c", "n")
    try:
        ext = rules.check_claims(claims, exp, now=NOW)
    except OidcRefused as refused:
        assert refused.why.replace("-", "").isalpha()
        return
    aud = claims["aud"]
    assert claims["iss"] == "https://idp.example.com"
    assert aud == "c" or (isinstance(aud, list) and "c" in aud)
    if (isinstance(aud, list) and len(aud) > 1) or claims.get("azp") is not None:
        assert claims["azp"] == "c"
    assert claims["exp"] >= NOW - rules.LEEWAY_SECONDS
    assert claims["iat"] <= NOW + rules.LEEWAY_SECONDS
    if claims.get("nbf") is not None:  # null is as absent
        assert claims["nbf"] <= NOW + rules.LEEWAY_SECONDS
    assert claims["nonce"] == "n"
    assert isinstance(claims["sub"], str) and claims["sub"] and ext.subject == claims["sub"]
    if "email_verified" not in claims:
        assert ext.email_verified is False
    else:
        said = claims["email_verified"]
        assert said is True or (isinstance(said, str) and said.lower() == "true")
        assert ext.email_verified is True
    assert all(isinstance(v, str) and v.isprintable() for v in ext.mfa_evidence)
