"""The domain challenge lookup (identity/sso/dnscheck.py) against a real DNS server on
loopback (devtools/dnsserver.py): every answer DNS can give becomes a match or one of the
three domain errors with a message naming what was looked up and what was found; a
truncated UDP answer is retried over TCP; a CNAME is followed; a silent server costs at
most the configured time; a dead resolver is passed over for the next."""

from __future__ import annotations

import time

import pytest

from ontrackio.devtools.dnsserver import LoopbackDNS
from ontrackio.identity.errors import (
    DomainChallengeMismatch,
    DomainChallengeMissing,
    DomainDnsUnavailable,
)
from ontrackio.identity.sso.dnscheck import ChallengeLookup, ResolverConfig
from tests.conftest import unique

pytestmark = pytest.mark.integration
TOKEN = "0123456789abcdef" * 4
VALUE = "ontrack-verify=" + TOKEN


@pytest.fixture(scope="module")
def dns():
    with LoopbackDNS() as server:
        yield server


@pytest.fixture
def domain(dns) -> str:
    return f"{unique('d')}.example.com"


def lookup(dns, timeout=1.0, nameservers=None):
    return ChallengeLookup(ResolverConfig(nameservers or ("127.0.0.1",), dns.port, timeout))


def name(domain):
    return f"_ontrack-challenge.{domain}"


def test_the_published_value_verifies(dns, domain):
    dns.txt(name(domain), VALUE)
    lookup(dns).check(domain, TOKEN)


def test_the_value_among_others_verifies_and_case_of_the_name_does_not_matter(dns, domain):
    dns.txt(name(domain).upper(), "v=spf1 -all", "google-site-verification=abc", VALUE)
    lookup(dns).check(domain, TOKEN)


def test_a_missing_name_says_nxdomain(dns, domain):
    with pytest.raises(DomainChallengeMissing) as info:
        lookup(dns).check(domain, TOKEN)
    assert str(info.value) == (
        f"no TXT record found: the name {name(domain)} does not exist in DNS (NXDOMAIN)"
    )
    assert info.value.reason == "domain-challenge-missing"


def test_a_name_without_txt_says_so(dns, domain):
    dns.a(name(domain), "192.0.2.7")
    with pytest.raises(DomainChallengeMissing, match="exists in DNS but has no TXT record"):
        lookup(dns).check(domain, TOKEN)


def test_a_wrong_value_names_what_was_found(dns, domain):
    dns.txt(name(domain), "ontrack-verify=" + "f" * 64, "v=spf1 -all\x07")
    with pytest.raises(DomainChallengeMismatch) as info:
        lookup(dns).check(domain, TOKEN)
    text = str(info.value)
    assert text.startswith(f"{name(domain)} has 2 TXT records, none of them {VALUE}")
    assert '"ontrack-verify=' + "f" * 64 + '"' in text and '"v=spf1 -all?"' in text
    assert info.value.reason == "domain-challenge-mismatch"


def test_another_tenants_token_does_not_verify(dns, domain):
    other = "9" * 64
    dns.txt(name(domain), "ontrack-verify=" + other)
    lookup(dns).check(domain, other)
    with pytest.raises(DomainChallengeMismatch):
        lookup(dns).check(domain, TOKEN)


def test_the_record_at_the_domain_itself_does_not_count(dns, domain):
    dns.txt(domain, VALUE)  # at the apex, not at _ontrack-challenge.<domain>
    dns.txt(f"x.{name(domain)}", VALUE)  # below it: the challenge name only exists
    with pytest.raises(DomainChallengeMissing, match="has no TXT record"):
        lookup(dns).check(domain, TOKEN)


def test_a_large_answer_is_fetched_over_tcp(dns, domain):
    dns.txt(name(domain), *(f"filler-{i}-" + "x" * 290 for i in range(8)), VALUE)
    lookup(dns).check(domain, TOKEN)
    protocols = [q.protocol for q in dns.queries(name(domain))]
    assert protocols == ["udp", "tcp"]


def test_a_value_in_several_strings_is_their_join(dns, domain):
    dns.txt(name(domain), ("ontrack-verify=", TOKEN[:20], TOKEN[20:]))
    lookup(dns).check(domain, TOKEN)


def test_a_value_is_compared_whole_never_by_prefix(dns, domain):
    dns.txt(name(domain), VALUE + "-" + "b" * 300, (VALUE, "x"))
    with pytest.raises(DomainChallengeMismatch, match="2 TXT records"):
        lookup(dns).check(domain, TOKEN)


def test_a_cname_delegating_the_challenge_is_followed(dns, domain):
    target = f"{unique('t')}.dns-provider.example"
    dns.cname(name(domain), target)
    dns.txt(target, VALUE)
    lookup(dns).check(domain, TOKEN)


def test_servfail_is_dns_unavailable(dns, domain):
    dns.servfail(name(domain))
    with pytest.raises(DomainDnsUnavailable, match="SERVFAIL") as info:
        lookup(dns).check(domain, TOKEN)
    assert info.value.reason == "domain-dns-unavailable"


def test_a_silent_server_times_out_within_the_setting(dns, domain):
    dns.drop(name(domain))
    started = time.monotonic()
    with pytest.raises(DomainDnsUnavailable, match="within 0.6 s"):
        lookup(dns, timeout=0.6).check(domain, TOKEN)
    assert time.monotonic() - started < 1.5


def test_a_dead_resolver_is_passed_over_for_the_next(dns, domain):
    dns.txt(name(domain), VALUE)
    # 127.0.0.2 answers nothing on that port (the server listens on 127.0.0.1 only).
    lookup(dns, timeout=2.0, nameservers=("127.0.0.2", "127.0.0.1")).check(domain, TOKEN)


def test_no_resolver_answering_at_all_is_dns_unavailable(dns, domain):
    with pytest.raises(DomainDnsUnavailable):
        lookup(dns, timeout=0.5, nameservers=("127.0.0.2",)).check(domain, TOKEN)
