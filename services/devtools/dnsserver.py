"""A real DNS server on loopback, for the tests of domain verification.

dnslib's ``DNSServer`` answers on 127.0.0.1, over UDP and TCP on the same free port, from
records the test sets (``txt``, ``cname``, ``a``; ``remove``), authoritatively: a name
nobody set is NXDOMAIN, a name that exists without the asked type (or only as the parent of
a set name) is an empty NOERROR answer, a CNAME is followed within the zone. A UDP answer
larger than the client's EDNS payload size (512 bytes without EDNS) is truncated, so a
client must retry over TCP, as with a real server. For failures: ``servfail`` a name
(SERVFAIL), ``drop`` a name (no answer at all: the client times out). ``queries`` records
what was asked (name, type, protocol).

The server runs in threads of the process that owns it; processes are pointed at it by
``env()`` (the identity api's resolver settings).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

HOST = "127.0.0.1"
TTL = 60
MAX_CNAME_CHAIN = 8
CLASSIC_UDP_LIMIT = 512


def _key(name: str) -> str:
    return name.lower().rstrip(".") + "."


@dataclass(frozen=True)
class Query:
    name: str  # as asked, absolute, lower case
    qtype: str  # "TXT", "A", …
    protocol: str  # "udp" | "tcp"


class _Zone:
    """The records, the failure switches and the query log; shared by the server threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, list[RR]] = {}
        self.failing: set[str] = set()
        self.dropped: set[str] = set()
        self.queries: list[Query] = []

    def exists(self, name: str) -> bool:
        return name in self.records or any(k.endswith("." + name) for k in self.records)

    def answer(self, request: DNSRecord, protocol: str) -> DNSRecord:
        q = request.q
        name, qtype = _key(str(q.qname)), QTYPE[q.qtype]
        with self.lock:
            self.queries.append(Query(name, qtype, protocol))
            if name in self.dropped:
                raise DNSError("dropped on purpose")  # the handler then sends nothing
            reply = request.reply()
            reply.header.aa = 1
            if name in self.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            for _ in range(MAX_CNAME_CHAIN):
                rrs = self.records.get(name, [])
                cnames = [rr for rr in rrs if rr.rtype == QTYPE.CNAME]
                if cnames and qtype != "CNAME":
                    reply.add_answer(cnames[0])
                    name = _key(str(cnames[0].rdata.label))
                    continue
                for rr in rrs:
                    if QTYPE[rr.rtype] == qtype or qtype == "ANY":
                        reply.add_answer(rr)
                if not self.exists(name) and not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                break
            return reply


class _Handler(DNSHandler):
    """dnslib's handler, truncating UDP answers as a real server must (its own truncates
    only when told a fixed size)."""

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        zone: _Zone = self.server.resolver.zone
        reply = zone.answer(request, self.protocol)
        packed = reply.pack()
        if self.protocol == "udp":
            limit = max(
                [CLASSIC_UDP_LIMIT] + [rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT]
            )
            if len(packed) > limit:
                truncated = request.reply()
                truncated.header.tc = 1
                packed = truncated.pack()
        return packed


class _Resolver:
    def __init__(self, zone: _Zone) -> None:
        self.zone = zone

    def resolve(self, request, handler):  # pragma: no cover - _Handler answers itself
        return self.zone.answer(request, handler.protocol)


class LoopbackDNS:
    """The server; a context manager (start, stop). Set records while it runs."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self.zone = _Zone()
        self.port = 0
        self._servers: list[DNSServer] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LoopbackDNS:
        quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)
        resolver = _Resolver(self.zone)
        for _ in range(50):
            udp = DNSServer(resolver, address=self.host, port=0, logger=quiet, handler=_Handler)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    resolver, address=self.host, port=port, tcp=True, logger=quiet, handler=_Handler
                )
            except OSError:  # the TCP port of that number is taken: another pair
                udp.server.server_close()
                continue
            self.port, self._servers = port, [udp, tcp]
            for server in self._servers:
                server.start_thread()
            return self
        raise OSError("no free port for both UDP and TCP on loopback")

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> LoopbackDNS:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The settings that point a process's domain checks at this server."""
        return {
            "ONTRACK_DNS_NAMESERVERS": json.dumps([self.host]),
            "ONTRACK_DNS_PORT": str(self.port),
        }

    # -- records ------------------------------------------------------------------------------

    def _set(self, name: str, rrs: list[RR], replace_types: Iterable[int]) -> None:
        key = _key(name)
        with self.zone.lock:
            kept = [rr for rr in self.zone.records.get(key, []) if rr.rtype not in replace_types]
            if kept + rrs:
                self.zone.records[key] = kept + rrs
            else:
                self.zone.records.pop(key, None)
            self.zone.failing.discard(key)
            self.zone.dropped.discard(key)

    def txt(self, name: str, *values: str | bytes | tuple[str, ...]) -> None:
        """Replace ``name``'s TXT records by one per value (a value over 255 bytes is split
        into several strings of one record, as DNS requires; a tuple gives the strings
        itself); no value removes them."""
        rrs = []
        for value in values:
            if isinstance(value, tuple):
                chunks = [part.encode() for part in value]
            else:
                data = value.encode() if isinstance(value, str) else value
                chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
            rrs.append(RR(_key(name), QTYPE.TXT, rdata=TXT(chunks), ttl=TTL))
        self._set(name, rrs, {QTYPE.TXT})

    def cname(self, name: str, target: str) -> None:
        self._set(
            name, [RR(_key(name), QTYPE.CNAME, rdata=CNAME(_key(target)), ttl=TTL)], {QTYPE.CNAME}
        )

    def a(self, name: str, address: str) -> None:
        kind, rdata = (QTYPE.AAAA, AAAA(address)) if ":" in address else (QTYPE.A, A(address))
        self._set(name, [RR(_key(name), kind, rdata=rdata, ttl=TTL)], {kind})

    def remove(self, name: str) -> None:
        """Forget every record of ``name`` (and its failure switches)."""
        key = _key(name)
        with self.zone.lock:
            self.zone.records.pop(key, None)
            self.zone.failing.discard(key)
            self.zone.dropped.discard(key)

    def servfail(self, name: str) -> None:
        with self.zone.lock:
            self.zone.failing.add(_key(name))

    def drop(self, name: str) -> None:
        with self.zone.lock:
            self.zone.dropped.add(_key(name))

    def queries(self, name: str | None = None) -> list[Query]:
        with self.zone.lock:
            return [q for q in self.zone.queries if name is None or q.name == _key(name)]
