"""A tiny authoritative DNS server on loopback UDP, answering from a dict (built on dnspython).

Records are ``{name: [(type, value)]}`` in zone-file text (TXT values quoted). CNAMEs are
followed within the dict; names in ``servfail`` answer SERVFAIL, names in ``timeout`` never
answer; ``ttls`` sets a name's TTL; negative answers carry an SOA whose minimum is
``negative_ttl`` when it is set.
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.servers.loop import ServerLoop

Records = dict[str, list[tuple[str, str]]]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, records: Records, servfail: set[str], timeout: set[str] | None = None,
                 ttls: dict[str, int] | None = None, default_ttl: int = 60,
                 negative_ttl: int | None = None, truncated: set[str] | None = None) -> None:
        self.records = records
        self.truncated = truncated if truncated is not None else set()
        self.servfail = servfail
        self.timeout = timeout if timeout is not None else set()
        self.ttls = ttls if ttls is not None else {}
        self.default_ttl = default_ttl
        self.negative_ttl = negative_ttl
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append(f"{name} {rdtype}")
        if name in self.timeout:
            return
        if name in self.truncated:  # "ask again over TCP", where nothing listens
            response.flags |= dns.flags.TC
            assert self.transport is not None
            self.transport.sendto(response.to_wire(), addr)
            return
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
            self._negative(response, name)
        else:
            self._answer(response, name, rdtype)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)

    def _answer(self, response: dns.message.Message, name: str, rdtype: str) -> None:
        for _ in range(8):  # follow CNAMEs inside the dict, as an authoritative server would
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
            return

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


class DNSServer:
    """Serves ``records`` {name: [(type, value)]}; names in ``servfail`` answer SERVFAIL,
    names in ``timeout`` are never answered, names in ``truncated`` get an empty truncated
    answer (TC) and no TCP server to retry on."""

    def __init__(
        self, loop: ServerLoop, records: Records, servfail: set[str], *,
        timeout: set[str] | None = None, ttls: dict[str, int] | None = None,
        default_ttl: int = 60, negative_ttl: int | None = None,
        truncated: set[str] | None = None,
    ) -> None:
        self.protocol = _Protocol(records, servfail, timeout, ttls, default_ttl, negative_ttl,
                                  truncated)
        self._loop = loop

        async def start() -> asyncio.DatagramTransport:
            aloop = asyncio.get_running_loop()
            transport, _ = await aloop.create_datagram_endpoint(
                lambda: self.protocol, local_addr=("127.0.0.1", 0)
            )
            return transport

        self.transport = loop.run(start())
        self.port = int(self.transport.get_extra_info("sockname")[1])

    @property
    def queries(self) -> list[str]:
        """Every question asked so far, as ``"name TYPE"``."""
        return self.protocol.queries

    def close(self) -> None:
        """Stop answering (the socket closes in the server loop)."""
        self._loop.call(self.transport.close)
