"""The DNS side of domain verification: is the challenge's TXT record published?

One lookup per check, with dnspython, against the resolvers the settings name
(``dns_nameservers`` on ``dns_port``; none named: the system's, from /etc/resolv.conf), over
UDP with EDNS and TCP when an answer is truncated, no cache of ours, CNAMEs followed (a
tenant may delegate the challenge name), bounded by ``dns_timeout_seconds`` in all. Every
outcome other than a match is a domain error whose message says what was looked up and
what was found; nothing here raises anything else for what DNS answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from ontrackio.identity.domain import domains as rules
from ontrackio.identity.errors import (
    DomainChallengeMismatch,
    DomainChallengeMissing,
    DomainDnsUnavailable,
)

EDNS_PAYLOAD = 1232  # the DNS flag day's size: no fragmentation on common paths
MAX_SHOWN_VALUES = 3
MAX_SHOWN_CHARS = 80


@dataclass(frozen=True)
class ResolverConfig:
    """Where and how long to ask: ``nameservers`` (IP addresses; empty: the system's)."""

    nameservers: tuple[str, ...] = ()
    port: int = 53
    timeout_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings) -> ResolverConfig:
        return cls(tuple(settings.dns_nameservers), settings.dns_port, settings.dns_timeout_seconds)


class ChallengeLookup:
    """Checks a domain's challenge record against the configured resolvers."""

    def __init__(self, config: ResolverConfig):
        self.config = config

    def _resolver(self) -> dns.resolver.Resolver:
        """A fresh resolver per check: no answer cached between checks, and the system's
        configuration read as it is now."""
        c = self.config
        if c.nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(a, c.port) for a in c.nameservers]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise DomainDnsUnavailable(
                    "no DNS resolver is configured on the identity service; try again later"
                ) from None
        resolver.lifetime = c.timeout_seconds
        # Per server and attempt: leaves time to retry another server, or the same one.
        resolver.timeout = max(0.2, c.timeout_seconds / 2)
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        resolver.cache = None
        return resolver

    def txt_values(self, name: str) -> list[bytes]:
        """Every TXT value at ``name`` (each record's strings joined, RFC 7208 3.3).

        Raises DomainChallengeMissing when the name does not exist or has no TXT record,
        DomainDnsUnavailable when no answer came (timeout, SERVFAIL, refused)."""
        try:
            answer = self._resolver().resolve(
                dns.name.from_text(name), dns.rdatatype.TXT, search=False
            )
        except dns.resolver.NXDOMAIN:
            raise DomainChallengeMissing(
                f"no TXT record found: the name {name} does not exist in DNS (NXDOMAIN)"
            ) from None
        except dns.resolver.NoAnswer:
            raise DomainChallengeMissing(
                f"no TXT record found: {name} exists in DNS but has no TXT record"
            ) from None
        except dns.resolver.LifetimeTimeout:
            raise DomainDnsUnavailable(
                f"no DNS answer for {name} within {self.config.timeout_seconds:g} s; "
                "try again later"
            ) from None
        except dns.resolver.NoNameservers:
            raise DomainDnsUnavailable(
                f"the DNS servers could not answer for {name} (SERVFAIL or refused); "
                "try again later"
            ) from None
        except dns.exception.DNSException as exc:
            raise DomainDnsUnavailable(
                f"the DNS lookup of {name} failed ({type(exc).__name__}); try again later"
            ) from None
        return [b"".join(rdata.strings) for rdata in answer]

    def check(self, domain: str, token: str) -> None:
        """Return when ``domain``'s challenge TXT record holds ``token``'s value; raise
        DomainChallengeMissing, DomainChallengeMismatch or DomainDnsUnavailable otherwise."""
        name = rules.challenge_name(domain)
        expected = rules.challenge_value(token).encode("ascii")
        found = self.txt_values(name)
        if any(value.strip() == expected for value in found):
            return
        raise DomainChallengeMismatch(
            f"{name} has {len(found)} TXT record{'s' if len(found) != 1 else ''}, "
            f"none of them {rules.challenge_value(token)} ({describe(found)})"
        )


def describe(values: Sequence[bytes]) -> str:
    """What was found, for the message: the first few values, printable and bounded."""
    shown = []
    for value in values[:MAX_SHOWN_VALUES]:
        text = value.decode("ascii", "replace")
        text = "".join(c if c.isprintable() and c.isascii() else "?" for c in text)
        shown.append(
            '"' + text[:MAX_SHOWN_CHARS] + ("…" if len(text) > MAX_SHOWN_CHARS else "") + '"'
        )
    more = len(values) - len(shown)
    return "found " + ", ".join(shown) + (f" and {more} more" if more > 0 else "")
