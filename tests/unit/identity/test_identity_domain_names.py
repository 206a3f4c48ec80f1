"""Domain names as a tenant's admin gives them (``domains.normalise``) and as an IdP's
email carries them (``domains.email_domain``).

Promises: ``normalise`` maps any spelling of one name (case, trailing dot, Unicode or
A-labels, UTS #46 width forms) to one A-label form, refuses everything else with
InvalidDomain (never another error), and what it returns the registry's own parser
(``tenants.normalise_domain``, behind routing) keeps as it is; ``email_domain`` maps no
look-alike onto a real domain and never raises.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ontrackio.identity.domain import domains as rules
from ontrackio.identity.domain import tenants
from ontrackio.identity.errors import InvalidDomain
from ontrackio.identity.sso.domains import challengeable
from tests.unit.gateway.strategies import PROPERTY


@pytest.mark.parametrize(
    "text, expected",
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  example.com\t", "example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("ＡＣＭＥ.example.com", "acme.example.com"),  # full-width, mapped by UTS #46
        ("a。b.com", "a.b.com"),  # the ideographic full stop is a dot
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008: ß is kept, not "ss"
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),  # an IDN top-level domain
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_spellings_of_one_name_normalise_to_its_a_labels(text, expected):
    assert rules.normalise(text) == expected


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "required"),
        ("   ", "required"),
        ("localhost", "at least two labels"),
        ("example", "at least two labels"),
        ("1.2.3.4", "not a host name"),
        ("a..b.com", "empty"),
        (".example.com", "empty"),
        ("example.com..", "empty"),
        ("-a.example.com", "hyphen"),
        ("a-.example.com", "hyphen"),
        ("ab--c.example.com", "hyphen"),
        ("a_b.example.com", "not allowed"),
        ("*.example.com", "not allowed"),
        ("xn--zz.com", "punycode"),
        ("a b.com", "spaces and control"),
        ("example.com\x00", "spaces and control"),
        ("exa\x00mple.com", "spaces and control"),
        ("example.com\n", "spaces and control"),
        ("a\u2028b.com", "spaces and control"),
        ("ab\u200d.com", "not allowed"),  # a joiner where IDNA 2008 forbids it
        ("example.com/path", "not allowed"),
        ("user@example.com", "not allowed"),
        ("a" * 64 + ".com", "too long"),
        (("a" * 60 + ".") * 5 + "com", "too long"),
        ("x" * 2000, "longer than 1024"),
    ],
)
def test_anything_else_is_refused_naming_why(text, says):
    with pytest.raises(InvalidDomain, match=says):
        rules.normalise(text)


def test_a_refusal_quotes_the_input_bounded():
    with pytest.raises(InvalidDomain) as info:
        rules.normalise("a_" * 300 + ".com")
    assert len(str(info.value)) < 300 and "…" in str(info.value)


def test_the_unicode_form_is_shown_for_people():
    assert rules.display_name("xn--bcher-kva.example") == "bücher.example"
    assert rules.display_name("example.com") == "example.com"
    assert rules.display_name("xn--zz.com") == "xn--zz.com"  # undecodable: shown as stored


def test_the_challenge_is_a_txt_record_under_the_domain():
    assert rules.challenge_name("example.com") == "_ontrack-challenge.example.com"
    assert rules.challenge_value("ab" * 32) == "ontrack-verify=" + "ab" * 32


def test_a_domain_too_long_for_its_challenge_record_is_refused():
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters: it routes
    assert tenants.normalise_domain(longest) == longest
    with pytest.raises(InvalidDomain, match="too long for its challenge"):
        challengeable(longest)
    assert challengeable("a" * 63 + ".com") == "a" * 63 + ".com"


HOSTILE = st.sampled_from(
    [
        "\x00",
        "\ud800",  # a lone surrogate
        "\u202e",  # right-to-left override
        "\u200b",
        "\ufeff",
        "\u00a0",
        "\u3002",
        "\uff0e",
        "K",  # the Kelvin sign
        "ﬀ",
        "ß",
        "ς",
        "İ",
        "\U0001f600",
        "xn--",
        "..",
        "-",
        "_",
        "%2e",
        "\\",
        "/",
    ]
)
NAMEISH = st.lists(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=12)
    | st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)
    | HOSTILE,
    min_size=1,
    max_size=6,
).map(".".join)


@PROPERTY
@given(NAMEISH | st.text(max_size=300) | st.text(min_size=1000, max_size=5000))
@example("ＡＣＭＥ.example.com")
@example("Kelvin.example.com")
@example("\ud800.example.com")
@example("a" * 10_000)
def test_any_text_is_normalised_or_refused_and_routing_agrees(text):
    try:
        domain = rules.normalise(text)
    except InvalidDomain as exc:
        assert str(exc) and len(str(exc)) < 400
        return
    assert domain.isascii() and domain == domain.lower() and domain.isprintable()
    assert len(domain) <= 253 and not domain.endswith(".")
    assert rules.normalise(domain) == domain  # idempotent
    assert rules.normalise(rules.display_name(domain)) == domain  # the Unicode form too
    assert rules.normalise(domain.upper() + ".") == domain
    assert tenants.normalise_domain(domain) == domain  # what routing will look up


@PROPERTY
@given(st.text(max_size=80), NAMEISH | st.text(max_size=80))
@example("alice", "ｅｘａｍｐｌｅ.com")
@example("alice", "\u212aelvin.com")
@example("alice", "example.com\x00")
def test_an_email_domain_is_strict_never_raises_and_never_maps_a_look_alike(local, domain):
    email = f"{local}@{domain}"
    found = rules.email_domain(email)
    if found is None:
        return
    assert tenants.normalise_domain(found) == found
    # Only ASCII case and a trailing dot are forgiven; a non-ASCII label must already be
    # the canonical IDNA 2008 spelling, so the A-labels spell back to exactly what was sent.
    sent = domain.removesuffix(".").lower() if domain.isascii() else domain.removesuffix(".")
    assert rules.display_name(found) == rules.display_name(sent.lower())


@pytest.mark.parametrize(
    "email, expected",
    [
        ("alice@example.com", "example.com"),
        ("Alice@EXAMPLE.com", "example.com"),
        ("alice@example.com.", "example.com"),
        ("bob@bücher.example", "xn--bcher-kva.example"),
        ("bob@xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("eve@ｅｘａｍｐｌｅ.com", None),  # full-width look-alike: not example.com
        ("eve@\u212aelvin.com", None),  # Kelvin sign: not kelvin.com
        ("eve@BÜCHER.example", None),  # non-ASCII must already be canonical
        ("eve@example.com@evil.com", None),
        ("eve", None),
        ("eve@", None),
        ("eve@localhost", None),
        ("eve@1.2.3.4", None),
        ("eve@[192.0.2.1]", None),
        ("eve@exa mple.com", None),
        ("eve@example.com\x00", None),
        ("eve@xn--zz.com", None),
        ("eve@a_b.example.com", None),
        ("x" * 400 + "@example.com", None),
    ],
)
def test_email_domains(email, expected):
    assert rules.email_domain(email) == expected
