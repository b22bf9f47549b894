"""The demo's authoritative DNS server: a tiny loopback UDP responder for the demo's zones.

It answers from a fixed table (TTL 60, authoritative), NXDOMAIN for names it does not know,
so the exporter's DNS checks have real records to read: ``demo.localhost`` is set up well,
``weak.localhost`` is deliberately broken (SPF +all, no DMARC, a 1024-bit DKIM key).
It also serves reverse DNS for the demo relays' egress addresses (127.0.0.10 is forward
confirmed, 127.0.0.2 is not) and a blocklist zone, ``dnsbl.demo.localhost``, that lists
127.0.0.2, the address every DNSBL lists as its test entry.
"""

from __future__ import annotations

import asyncio
import base64
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["TTL", "DemoDNS", "demo_records", "dkim_record"]

TTL = 60
DEMO_DOMAIN = "demo.localhost"
WEAK_DOMAIN = "weak.localhost"
BLOCKLIST = "dnsbl.demo.localhost"

Records = dict[tuple[str, str], list[str]]  # (lowercase name with the dot, type) -> rdata


def _txt(value: str) -> str:
    """TXT rdata text: the value split into quoted strings of at most 255 bytes."""
    raw = value.encode("ascii")
    return " ".join(f'"{raw[i:i + 255].decode()}"' for i in range(0, len(raw), 255))


def dkim_record(bits: int) -> str:
    """A ``v=DKIM1`` record for a fresh RSA key of ``bits`` (SubjectPublicKeyInfo, base64)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"


def demo_records() -> Records:
    """The demo zones; generates the two DKIM keys (2048 and 1024 bits)."""
    table: dict[tuple[str, str], list[str]] = {}

    def add(name: str, rdtype: str, *values: str) -> None:
        table.setdefault((name.lower().rstrip(".") + ".", rdtype), []).extend(values)

    d, w = DEMO_DOMAIN, WEAK_DOMAIN
    add(d, "MX", f"10 mx.{d}.")
    add(f"mx.{d}", "A", "127.0.0.1")
    add(f"relay.{d}", "A", "127.0.0.1")
    add("localhost", "A", "127.0.0.1")  # the demo relays' host name
    add(d, "TXT", _txt("v=spf1 ip4:127.0.0.1 ~all"))
    add(f"demo._domainkey.{d}", "TXT", _txt(dkim_record(2048)))
    add(f"_dmarc.{d}", "TXT", _txt(f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{d}"))
    add(f"_mta-sts.{d}", "TXT", _txt("v=STSv1; id=demo1"))
    add(f"_smtp._tls.{d}", "TXT", _txt(f"v=TLSRPTv1; rua=mailto:tls@{d}"))
    # Broken on purpose, so the demo shows findings.
    # Egress addresses: one with forward-confirmed reverse DNS, one listed on the blocklist.
    add("10.0.0.127.in-addr.arpa", "PTR", f"out.{d}.")
    add(f"out.{d}", "A", "127.0.0.10")
    add("2.0.0.127.in-addr.arpa", "PTR", f"mail.{w}.")  # no A record: not forward confirmed
    add(f"2.0.0.127.{BLOCKLIST}", "A", "127.0.0.2")
    add(f"2.0.0.127.{BLOCKLIST}", "TXT", _txt("demo listing: the DNSBL test entry"))
    add(w, "MX", f"10 mx.{d}.")
    add(w, "TXT", _txt("v=spf1 +all"))
    add(f"old._domainkey.{w}", "TXT", _txt(dkim_record(1024)))
    return table


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, records: Records) -> None:
        self.records = records
        self.names = {name for name, _ in records}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not a DNS query: drop it
        if self.transport is not None:
            self.transport.sendto(self.answer(query).to_wire(), addr)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        values = self.records.get((name, rdtype))
        if values:
            response.answer.append(dns.rrset.from_text_list(
                question.name, TTL, dns.rdataclass.IN, rdtype, values))
        elif name not in self.names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response  # a known name without this type: NOERROR, no data


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
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(records), local_addr=("127.0.0.1", 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
