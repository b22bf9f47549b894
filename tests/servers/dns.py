"""A tiny authoritative DNS server on loopback UDP, answering from a dict (built on dnspython)."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode
import dns.rrset

from tests.servers.loop import ServerLoop


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, records: dict[str, list[tuple[str, str]]], servfail: set[str]) -> None:
        self.records = records
        self.servfail = servfail
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
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            values = [v for t, v in self.records[name] if t == rdtype]
            if values:
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", rdtype, values)
                )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


class DNSServer:
    """Serves ``records`` {name: [(type, value)]}; names in ``servfail`` answer SERVFAIL."""

    def __init__(
        self, loop: ServerLoop, records: dict[str, list[tuple[str, str]]], servfail: set[str]
    ) -> None:
        self.protocol = _Protocol(records, servfail)

        async def start() -> asyncio.DatagramTransport:
            aloop = asyncio.get_running_loop()
            transport, _ = await aloop.create_datagram_endpoint(
                lambda: self.protocol, local_addr=("127.0.0.1", 0)
            )
            return transport

        self.transport = loop.run(start())
        self.port = int(self.transport.get_extra_info("sockname")[1])
