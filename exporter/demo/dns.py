"""The demo's authoritative DNS server: a tiny loopback UDP responder for the demo's zones.

It answers from a fixed table (TTL 60, authoritative), NXDOMAIN for names it does not know,
so the exporter's DNS checks have real records to read: ``demo.localhost`` is set up well,
``weak.localhost`` is deliberately broken (SPF +all, no DMARC, a 1024-bit DKIM key).
It also serves reverse DNS for the demo relays' egress addresses (127.0.0.10 is forward
confirmed, 127.0.0.2 is not) and a blocklist zone, ``dnsbl.demo.localhost``, that lists
127.0.0.2, the address every DNSBL lists as its test entry. Its answering core, ZoneProtocol,
serves any records; the tests' DNS server extends it with faults.
"""

from __future__ import annotations

import asyncio
import base64
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "BLOCKLIST", "DEMO_DOMAIN", "TTL", "DemoDNS", "Records", "ZoneProtocol", "demo_records",
    "dkim_record", "listen_udp", "txt",
]

TTL = 60
DEMO_DOMAIN = "demo.localhost"
WEAK_DOMAIN = "weak.localhost"
BLOCKLIST = "dnsbl.demo.localhost"

Records = dict[str, list[tuple[str, str]]]  # lower-case name, no final dot -> [(type, rdata)]


def txt(value: str) -> str:
    """TXT rdata in zone-file text: the value split into quoted strings of at most 255 bytes."""
    raw = value.encode("ascii")
    return " ".join(f'"{raw[i:i + 255].decode()}"' for i in range(0, len(raw), 255)) or '""'


def dkim_record(bits: int) -> str:
    """A ``v=DKIM1`` record for a fresh RSA key of ``bits`` (SubjectPublicKeyInfo, base64)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"


def demo_records() -> Records:
    """The demo zones; generates the two DKIM keys (2048 and 1024 bits)."""
    table: Records = {}

    def add(name: str, rdtype: str, *values: str) -> None:
        table.setdefault(name.lower().rstrip("."), []).extend((rdtype, v) for v in values)

    d, w = DEMO_DOMAIN, WEAK_DOMAIN
    add(d, "MX", f"10 mx.{d}.")
    add(f"mx.{d}", "A", "127.0.0.1")
    add(f"relay.{d}", "A", "127.0.0.1")
    add("localhost", "A", "127.0.0.1")  # the demo relays' host name
    add(d, "TXT", txt("v=spf1 ip4:127.0.0.1 ~all"))
    add(f"demo._domainkey.{d}", "TXT", txt(dkim_record(2048)))
    add(f"_dmarc.{d}", "TXT", txt(f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{d}"))
    add(f"_mta-sts.{d}", "TXT", txt("v=STSv1; id=demo1"))
    add(f"_smtp._tls.{d}", "TXT", txt(f"v=TLSRPTv1; rua=mailto:tls@{d}"))
    # Broken on purpose, so the demo shows findings.
    # Egress addresses: one with forward-confirmed reverse DNS, one listed on the blocklist.
    add("10.0.0.127.in-addr.arpa", "PTR", f"out.{d}.")
    add(f"out.{d}", "A", "127.0.0.10")
    add("2.0.0.127.in-addr.arpa", "PTR", f"mail.{w}.")  # no A record: not forward confirmed
    add(f"2.0.0.127.{BLOCKLIST}", "A", "127.0.0.2")
    add(f"2.0.0.127.{BLOCKLIST}", "TXT", txt("demo listing: the DNSBL test entry"))
    add(w, "MX", f"10 mx.{d}.")
    add(w, "TXT", txt("v=spf1 +all"))
    add(f"old._domainkey.{w}", "TXT", txt(dkim_record(1024)))
    return table


class ZoneProtocol(asyncio.DatagramProtocol):
    """Answers UDP queries authoritatively from ``records``: CNAMEs followed within them,
    NXDOMAIN for a name it does not know, NOERROR without data for a known name without the
    type. ``ttls`` sets a name's TTL (else ``default_ttl``); with ``negative_ttl`` set,
    negative answers carry an SOA whose minimum it is. Subclasses may change ``answer``."""

    def __init__(self, records: Records, *, default_ttl: int = TTL,
                 ttls: dict[str, int] | None = None, negative_ttl: int | None = None) -> None:
        self.records = records
        self.default_ttl = default_ttl
        self.ttls = ttls if ttls is not None else {}
        self.negative_ttl = negative_ttl
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not a DNS query: drop it
        response = self.respond(query)
        if response is not None and self.transport is not None:
            self.transport.sendto(response.to_wire(), addr)

    def respond(self, query: dns.message.Message) -> dns.message.Message | None:
        """The response to a query (FORMERR unless it asks one question), or None for none."""
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        return self.answer(query, name, dns.rdatatype.to_text(question.rdtype))

    def answer(self, query: dns.message.Message, name: str,
               rdtype: str) -> dns.message.Message | None:
        """The response to a question for ``name`` (lower case, no final dot) and ``rdtype``."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
            self._negative(response, name)
            return response
        for _ in range(8):  # follow CNAMEs inside the records, as an authoritative server would
            records = self.records.get(name, [])
            cnames = [v for t, v in records if t == "CNAME"]
            if cnames and rdtype != "CNAME":
                response.answer.append(self._rrset(name, "CNAME", cnames[:1]))
                name = cnames[0].rstrip(".").lower()
                continue
            values = [v for t, v in records if t == rdtype]
            if values:
                response.answer.append(self._rrset(name, rdtype, values))
            elif not response.answer:
                self._negative(response, name)
            break
        return response

    def _rrset(self, name: str, rdtype: str, values: list[str]) -> dns.rrset.RRset:
        ttl = self.ttls.get(name, self.default_ttl)
        return dns.rrset.from_text_list(dns.name.from_text(name), ttl, "IN", rdtype, values)

    def _negative(self, response: dns.message.Message, name: str) -> None:
        if self.negative_ttl is None:
            return
        zone = name.rsplit(".", 1)[-1] or "."
        soa = f"ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 {self.negative_ttl}"
        response.authority.append(dns.rrset.from_text(
            dns.name.from_text(zone), self.negative_ttl, "IN", "SOA", soa))


async def listen_udp(protocol: asyncio.DatagramProtocol,
                     host: str = "127.0.0.1") -> tuple[asyncio.DatagramTransport, int]:
    """Serve ``protocol`` on a UDP port of ``host`` the kernel picks: (transport, port)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: protocol, local_addr=(host, 0))
    return transport, int(transport.get_extra_info("sockname")[1])


class DemoDNS:
    """An authoritative UDP DNS server on 127.0.0.1 (port 0: the kernel picks one)."""

    def __init__(self, records: Records | None = None) -> None:
        self._records = records
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> None:
        records = self._records
        if records is None:  # RSA key generation takes a moment: off the loop
            records = await asyncio.to_thread(demo_records)
        self._transport, self.port = await listen_udp(ZoneProtocol(records))

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
