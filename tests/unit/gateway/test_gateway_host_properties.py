"""Properties of Host normalisation and classification: total, idempotent, canonical, and in
agreement with ``ipaddress`` for literals."""

from __future__ import annotations

import re
from ipaddress import IPv6Address

from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.provisional import domains

from ontrackio.core.tenancy import SLUG_RE
from ontrackio.gateway.hosts import classify_host, normalise_host
from tests.unit.gateway.strategies import PROPERTY, any_text, latin1_text

_CANONICAL = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z"
)


def _mixed_case(text: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if f else c for c, f in zip(text, flips + [False] * len(text), strict=False)
    )


@PROPERTY
@given(st.one_of(any_text, latin1_text))
@example("\u212acme.localhost")
@example("acme.localhost\x85")
def test_total_idempotent_and_canonical(text):
    host = normalise_host(text)  # never raises
    if host is None:
        return
    assert normalise_host(host) == host
    assert host.isascii() and host == host.lower()
    # Nothing but case, port, a trailing dot and SP/HTAB was taken away: no folding of
    # look-alikes (the Kelvin sign lower-cases to "k") and no Unicode spaces stripped.
    core = text.strip(" \t")
    assert core.isascii(), text
    if not host.startswith("["):
        assert core.lower().startswith(host), text
    if host.startswith("["):
        assert host == f"[{IPv6Address(host[1:-1]).compressed}]"
    else:
        assert _CANONICAL.match(host), host


@PROPERTY
@given(domains(), st.lists(st.booleans(), max_size=60), st.integers(0, 65535), st.booleans())
def test_any_spelling_of_a_domain_normalises_to_its_lower_case(domain, flips, port, dot):
    spelled = _mixed_case(domain, flips) + ("." if dot else "") + f":{port}"
    assert normalise_host(spelled) == domain.lower()


@PROPERTY
@given(st.ip_addresses(v=6), st.integers(0, 65535))
def test_ipv6_literals_agree_with_ipaddress(ip, port):
    for text in (f"[{ip}]", f"[{ip.exploded}]:{port}", f"[{ip.exploded.upper()}]"):
        assert normalise_host(text) == f"[{ip.compressed}]"


@PROPERTY
@given(st.ip_addresses(v=4), st.integers(0, 65535))
def test_ipv4_literals_are_never_tenant_hosts(ip, port):
    host = normalise_host(f"{ip}:{port}")
    assert host == str(ip)
    assert classify_host(host, "localhost") is None


@PROPERTY
@given(st.one_of(any_text, domains()), st.sampled_from(["localhost", "ontrack.io"]))
def test_classification_is_total_and_slugs_are_valid(text, base):
    host = normalise_host(text)
    if host is None:
        return
    target = classify_host(host, base)
    if target is not None and target.slug is not None:
        assert SLUG_RE.match(target.slug)
        assert host == f"{target.slug}.{base}"
