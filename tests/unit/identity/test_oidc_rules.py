"""OIDC claim rules (identity/sso/oidc/rules.py): what an ID token must say to be believed,
per provider, and the configuration and edge values the rules accept. Pure; no sockets."""

from __future__ import annotations

import pytest

from ontrackio.identity.errors import InvalidOidcConfig, OidcRefused
from ontrackio.identity.sso.oidc import rules

NOW = 1_800_000_000.0
CLIENT = "client-123"
NONCE = "n-0S6_WzA2Mj"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TID = "00000000-1111-2222-3333-444444444444"
OID = "00000000-0000-0000-66f3-3332eca7ea81"
ENTRA_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
GENERIC_ISSUER = "https://idp.example.com"


def expected(provider: str = "oidc", **changes) -> rules.Expected:
    base = {
        "oidc": dict(issuer=GENERIC_ISSUER),
        "google": dict(issuer=rules.GOOGLE_ISSUER, hosted_domains=("acme.example",)),
        "entra": dict(issuer=ENTRA_TEMPLATE, entra_tenant=TID),
    }[provider]
    return rules.Expected(provider=provider, client_id=CLIENT, nonce=NONCE, **{**base, **changes})


def claims(provider: str = "oidc", **changes) -> dict:
    c = {
        "iss": GENERIC_ISSUER,
        "aud": CLIENT,
        "sub": "user-1",
        "iat": NOW - 5,
        "exp": NOW + 300,
        "nonce": NONCE,
        "email": "ann@acme.example",
        "email_verified": True,
        "name": "Ann Example",
    }
    if provider == "google":
        c.update(iss=rules.GOOGLE_ISSUER, azp=CLIENT, hd="acme.example")
    if provider == "entra":
        c.update(
            iss=f"https://login.microsoftonline.com/{TID}/v2.0",
            aud=[CLIENT],
            tid=TID,
            oid=OID,
            sub="AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            preferred_username="ann@acme.example",
            xms_edov=True,
        )
        c.pop("email_verified")
    for name, value in changes.items():
        if value is DROP:
            c.pop(name, None)
        else:
            c[name] = value
    return c


DROP = object()


def refused(provider: str, c: dict, exp: rules.Expected | None = None) -> str:
    with pytest.raises(OidcRefused) as info:
        rules.check_claims(c, exp or expected(provider), now=NOW)
    return info.value.why


# -- what each provider's good token gives ----------------------------------------------------


def test_a_generic_token_names_the_person_by_issuer_and_sub():
    ext = rules.check_claims(claims(amr=["pwd", "mfa"], acr="urn:x:loa:2"), expected(), now=NOW)
    assert (ext.method, ext.issuer, ext.subject) == ("oidc:oidc", GENERIC_ISSUER, "user-1")
    assert (ext.email, ext.email_verified, ext.display_name) == (
        "ann@acme.example",
        True,
        "Ann Example",
    )
    assert ext.mfa_evidence == ("pwd", "mfa", "urn:x:loa:2")


def test_an_entra_account_is_tid_and_oid_never_the_pairwise_sub():
    ext = rules.check_claims(claims("entra"), expected("entra"), now=NOW)
    assert ext.subject == f"{TID}:{OID}"
    assert ext.issuer == f"https://login.microsoftonline.com/{TID}/v2.0"
    assert ext.method == "oidc:entra"
    assert ext.email_verified is True  # xms_edov: the domain owner verified the email
    assert ext.attributes == {"tid": TID, "preferred_username": "ann@acme.example"}


def test_a_google_token_keeps_one_spelling_of_the_issuer():
    for iss in ("https://accounts.google.com", "accounts.google.com"):
        ext = rules.check_claims(claims("google", iss=iss), expected("google"), now=NOW)
        assert ext.issuer == "https://accounts.google.com"
        assert ext.attributes == {"hd": "acme.example"}


def test_the_bare_google_spelling_is_accepted_only_for_google_itself():
    exp = expected("google", issuer="https://google.test.example")
    assert refused("google", claims("google", iss="accounts.google.com"), exp) == rules.WHY_ISSUER


def test_two_tokens_with_one_email_and_different_subs_are_two_accounts():
    a = rules.check_claims(claims(sub="user-1"), expected(), now=NOW)
    b = rules.check_claims(claims(sub="user-2"), expected(), now=NOW)
    assert a.email == b.email and (a.issuer, a.subject) != (b.issuer, b.subject)


# -- issuer, audience, times, nonce --------------------------------------------------------


@pytest.mark.parametrize(
    "change, why",
    [
        (dict(iss="https://evil.example"), rules.WHY_ISSUER),
        (dict(iss=GENERIC_ISSUER + "/"), rules.WHY_ISSUER),
        (dict(iss=DROP), rules.WHY_ISSUER),
        (dict(iss=["https://idp.example.com"]), rules.WHY_CLAIM_TYPE),
        (dict(aud="someone-else"), rules.WHY_AUDIENCE),
        (dict(aud=["someone-else"]), rules.WHY_AUDIENCE),
        (dict(aud=DROP), rules.WHY_AUDIENCE),
        (dict(aud=[CLIENT, 7]), rules.WHY_AUDIENCE),
        (dict(aud=[CLIENT, "other"]), rules.WHY_AZP),  # several audiences, no azp
        (dict(aud=[CLIENT, "other"], azp="other"), rules.WHY_AZP),
        (dict(azp="other"), rules.WHY_AZP),  # azp, when present, is us
        (dict(exp=NOW - rules.LEEWAY_SECONDS - 1), rules.WHY_EXPIRED),
        (dict(exp=DROP), rules.WHY_CLAIM_TYPE),
        (dict(exp="1800000300"), rules.WHY_CLAIM_TYPE),
        (dict(exp=True), rules.WHY_CLAIM_TYPE),
        (dict(exp=float("nan")), rules.WHY_CLAIM_TYPE),
        (dict(iat=DROP), rules.WHY_CLAIM_TYPE),
        (dict(iat=NOW + rules.LEEWAY_SECONDS + 1), rules.WHY_ISSUED_IN_FUTURE),
        (dict(nbf=NOW + rules.LEEWAY_SECONDS + 1), rules.WHY_NOT_YET_VALID),
        (dict(nonce="another"), rules.WHY_NONCE),
        (dict(nonce=DROP), rules.WHY_NONCE),
        (dict(nonce=""), rules.WHY_NONCE),
        (dict(sub=DROP), rules.WHY_SUBJECT),
        (dict(sub=""), rules.WHY_SUBJECT),
        (dict(sub=12), rules.WHY_CLAIM_TYPE),
    ],
)
def test_a_generic_token_is_refused(change, why):
    assert refused("oidc", claims(**change)) == why


def test_the_leeway_is_small_and_symmetric():
    edge = rules.LEEWAY_SECONDS
    ok = claims(exp=NOW - edge, iat=NOW + edge, nbf=NOW + edge)
    assert rules.check_claims(ok, expected(), now=NOW).subject == "user-1"


def test_several_audiences_are_accepted_when_we_are_the_authorized_party():
    ext = rules.check_claims(claims(aud=["other", CLIENT], azp=CLIENT), expected(), now=NOW)
    assert ext.subject == "user-1"


# -- Entra ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, why",
    [
        # Another directory's token: its issuer matches its own tid, the tid is not ours.
        (
            dict(tid=OTHER_TID, iss=f"https://login.microsoftonline.com/{OTHER_TID}/v2.0"),
            rules.WHY_TENANT,
        ),
        # Our tid, another directory's issuer: the issuer is checked against the token's tid.
        (dict(iss=f"https://login.microsoftonline.com/{OTHER_TID}/v2.0"), rules.WHY_ISSUER),
        (dict(iss=ENTRA_TEMPLATE), rules.WHY_ISSUER),
        (dict(tid=DROP), rules.WHY_ISSUER),
        (dict(oid=DROP), rules.WHY_SUBJECT),
        (dict(oid="not-a-guid"), rules.WHY_SUBJECT),
        (dict(aud=[CLIENT, "api://other"]), rules.WHY_AZP),
    ],
)
def test_an_entra_token_is_refused(change, why):
    assert refused("entra", claims("entra", **change)) == why


def test_a_tenant_specific_entra_issuer_is_matched_exactly():
    exp = expected("entra", issuer=f"https://login.microsoftonline.com/{TID}/v2.0")
    assert rules.check_claims(claims("entra"), exp, now=NOW).subject == f"{TID}:{OID}"
    other = claims(
        "entra", tid=OTHER_TID, iss=f"https://login.microsoftonline.com/{OTHER_TID}/v2.0"
    )
    assert refused("entra", other, exp) == rules.WHY_ISSUER


def test_an_entra_email_is_verified_only_when_the_token_says_so():
    unsaid = rules.check_claims(claims("entra", xms_edov=DROP), expected("entra"), now=NOW)
    assert unsaid.email_verified is False
    denied = rules.check_claims(claims("entra", xms_edov=False), expected("entra"), now=NOW)
    assert denied.email_verified is False
    upn = rules.check_claims(claims("entra", email=DROP), expected("entra"), now=NOW)
    assert upn.email == "ann@acme.example"


# -- Google -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, why",
    [
        (dict(hd=DROP), rules.WHY_HOSTED_DOMAIN),  # a consumer account
        (dict(hd="evil.example"), rules.WHY_HOSTED_DOMAIN),
        (dict(hd="sub.acme.example"), rules.WHY_HOSTED_DOMAIN),
        (dict(hd=["acme.example"]), rules.WHY_CLAIM_TYPE),
        (dict(email_verified=False), rules.WHY_EMAIL_UNVERIFIED),
        (dict(azp="someone-else"), rules.WHY_AZP),
    ],
)
def test_a_google_token_is_refused(change, why):
    assert refused("google", claims("google", **change)) == why


def test_the_hosted_domain_is_compared_without_case():
    ext = rules.check_claims(claims("google", hd="ACME.example"), expected("google"), now=NOW)
    assert ext.attributes["hd"] == "acme.example"


# -- email ----------------------------------------------------------------------------------


@pytest.mark.parametrize("said", [False, "false", "FALSE", "no", 0, None, {}])
def test_email_verified_other_than_true_is_refused_when_present(said):
    assert refused("oidc", claims(email_verified=said)) == rules.WHY_EMAIL_UNVERIFIED


def test_email_verified_as_the_string_true_counts():
    assert rules.check_claims(claims(email_verified="true"), expected(), now=NOW).email_verified


def test_an_unsaid_email_verified_is_unverified():
    ext = rules.check_claims(claims(email_verified=DROP), expected(), now=NOW)
    assert ext.email_verified is False


@pytest.mark.parametrize("email", [DROP, "", "not-an-address", 42])
def test_a_token_without_an_email_is_refused(email):
    why = refused("oidc", claims(email=email))
    assert why in (rules.WHY_EMAIL_MISSING, rules.WHY_CLAIM_TYPE)


# -- header -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none"},
        {"alg": "None"},
        {"alg": "HS256", "kid": "k1"},
        {"alg": "HS512"},
        {},
        {"alg": ""},
        {"alg": ["RS256"]},
        {"alg": "RS256", "crit": ["exp"]},
    ],
)
def test_a_header_outside_the_allow_list_is_refused(header):
    with pytest.raises(OidcRefused) as info:
        rules.check_header(header)
    assert info.value.why == rules.WHY_ALGORITHM


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "RS512"])
def test_asymmetric_algorithms_pass(alg):
    assert rules.check_header({"alg": alg, "kid": "k", "jku": "https://evil.example/k"}) == alg


# -- PKCE, URLs, configuration --------------------------------------------------------------


def test_the_s256_challenge_is_rfc_7636s():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
    assert rules.s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    verifier = rules.new_code_verifier()
    assert 43 <= len(verifier) <= 128


def test_the_redirect_uri_comes_from_the_canonical_origin_only():
    assert (
        rules.redirect_uri("https://acme.ontrack.example", "entra")
        == "https://acme.ontrack.example/auth/oidc/entra/callback"
    )
    for bad in ("https://acme.example/x", "javascript:x", "https://a.example?x", "", "HTTPS://A"):
        with pytest.raises(InvalidOidcConfig):
            rules.redirect_uri(bad, "entra")


def test_state_and_binding_are_stored_only_as_keyed_hashes():
    state = rules.new_state()
    assert rules.state_key(b"k1", state) != rules.state_key(b"k2", state)
    assert rules.state_key(b"k1", state) != rules.binding_hash(b"k1", state)
    assert state.encode() not in rules.state_key(b"k1", state)


def test_configuration_defaults_per_provider():
    g = rules.validate_config("google", client_id="c", hosted_domains=["Acme.Example."])
    assert (g.issuer, g.hosted_domains, g.scopes) == (
        "https://accounts.google.com",
        ("acme.example",),
        rules.DEFAULT_SCOPES,
    )
    assert g.discovery_url == "https://accounts.google.com/.well-known/openid-configuration"
    e = rules.validate_config("entra", client_id="c", entra_tenant=TID.upper())
    assert e.issuer == f"https://login.microsoftonline.com/{TID}/v2.0" and e.entra_tenant == TID
    o = rules.validate_config("oidc", client_id="c", issuer=GENERIC_ISSUER, scopes=["email"])
    assert o.scopes == ("openid", "email")


@pytest.mark.parametrize(
    "provider, fields",
    [
        ("google", dict(client_id="c")),  # no Workspace domain: any Google account
        ("google", dict(client_id="c", hosted_domains=["not a domain"])),
        ("entra", dict(client_id="c")),
        ("entra", dict(client_id="c", entra_tenant="common")),
        ("oidc", dict(client_id="c")),
        ("oidc", dict(client_id="c", issuer="http://idp.example.com")),
        ("oidc", dict(client_id="c", issuer="https://user:pw@idp.example.com")),
        ("oidc", dict(client_id="c", issuer="https://idp.example.com/#x")),
        ("oidc", dict(client_id="c", issuer="https://idp.example.com/?tenant=1")),
        ("oidc", dict(client_id="c", issuer="ftp://idp.example.com")),
        ("oidc", dict(client_id="", issuer=GENERIC_ISSUER)),
        ("oidc", dict(client_id="a b", issuer=GENERIC_ISSUER)),
        ("oidc", dict(client_id="c", issuer=GENERIC_ISSUER, scopes=['bad"scope'])),
        ("oidc", dict(client_id="c", issuer=GENERIC_ISSUER, entra_tenant=TID)),
        ("oidc", dict(client_id="c", issuer=GENERIC_ISSUER, hosted_domains=["acme.example"])),
        ("saml", dict(client_id="c")),
    ],
)
def test_a_bad_configuration_is_refused(provider, fields):
    with pytest.raises(InvalidOidcConfig):
        rules.validate_config(provider, **fields)


def test_plain_http_only_to_loopback_and_only_when_allowed():
    for url in ("http://127.0.0.1:9000/x", "http://localhost:9000/x", "http://[::1]:9000/x"):
        with pytest.raises(InvalidOidcConfig):
            rules.validate_config("oidc", client_id="c", issuer=url)
        rules.validate_config("oidc", client_id="c", issuer=url, allow_loopback_http=True)
    with pytest.raises(InvalidOidcConfig):
        rules.validate_config(
            "oidc", client_id="c", issuer="http://idp.example.com", allow_loopback_http=True
        )


def test_the_discovered_issuer_must_be_the_configured_one():
    generic = rules.validate_config("oidc", client_id="c", issuer=GENERIC_ISSUER)
    assert rules.check_discovered_issuer(generic, GENERIC_ISSUER) == GENERIC_ISSUER
    with pytest.raises(InvalidOidcConfig):
        rules.check_discovered_issuer(generic, "https://other.example")
    with pytest.raises(InvalidOidcConfig):  # the template is Entra's alone
        rules.check_discovered_issuer(generic, ENTRA_TEMPLATE)
    entra = rules.validate_config(
        "entra",
        client_id="c",
        entra_tenant=TID,
        issuer="https://login.microsoftonline.com/organizations/v2.0",
    )
    assert rules.check_discovered_issuer(entra, ENTRA_TEMPLATE) == ENTRA_TEMPLATE


def test_the_client_secret_is_never_in_a_refusal():
    secret = "s3cr3t-value\x07"
    with pytest.raises(InvalidOidcConfig) as info:
        rules.validate_client_secret(secret)
    assert "s3cr3t" not in str(info.value)
    assert rules.validate_client_secret("a~b.c_d-e") == "a~b.c_d-e"
