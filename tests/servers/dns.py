"""The demo's DNS answering core on loopback UDP, with faults: SERVFAIL, no answer, truncation.

Records are ``{name: [(type, value)]}`` in zone-file text (TXT values quoted), answered as
the demo's ZoneProtocol does: CNAMEs followed within the dict, ``ttls`` per name, negative
answers with an SOA whose minimum is ``negative_ttl`` when it is set. Names in ``servfail``
answer SERVFAIL, names in ``timeout`` never answer, names in ``truncated`` get an empty
truncated answer.
"""

from __future__ import annotations

import socket

import dns.flags
import dns.message
import dns.rcode

from exporter.demo.dns import Records, ZoneProtocol, listen_udp
from tests.servers.loop import ServerLoop

__all__ = ["DNSServer", "FaultyZone", "Records"]


class FaultyZone(ZoneProtocol):
    """ZoneProtocol that records every question and answers the names of the fault sets
    badly; tests may change the sets and ``records`` while it runs."""

    def __init__(self, records: Records, servfail: set[str], timeout: set[str] | None = None,
                 ttls: dict[str, int] | None = None, default_ttl: int = 60,
                 negative_ttl: int | None = None, truncated: set[str] | None = None) -> None:
        super().__init__(records, default_ttl=default_ttl, ttls=ttls, negative_ttl=negative_ttl)
        self.servfail = servfail
        self.timeout = timeout if timeout is not None else set()
        self.truncated = truncated if truncated is not None else set()
        self.queries: list[str] = []

    def answer(self, query: dns.message.Message, name: str,
               rdtype: str) -> dns.message.Message | None:
        self.queries.append(f"{name} {rdtype}")
        if name in self.timeout:
            return None
        if name in self.truncated:  # "ask again over TCP", where nothing listens
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return response
        if name in self.servfail:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        return super().answer(query, name, rdtype)


class DNSServer:
    """Serves ``records`` {name: [(type, value)]} on 127.0.0.1 from the server loop; names
    in ``servfail`` answer SERVFAIL, names in ``timeout`` are never answered, names in
    ``truncated`` get an empty truncated answer (TC) and no TCP server to retry on."""

    def __init__(
        self, loop: ServerLoop, records: Records, servfail: set[str], *,
        timeout: set[str] | None = None, ttls: dict[str, int] | None = None,
        default_ttl: int = 60, negative_ttl: int | None = None,
        truncated: set[str] | None = None,
    ) -> None:
        self.protocol = FaultyZone(records, servfail, timeout, ttls, default_ttl, negative_ttl,
                                   truncated)
        self._loop = loop
        # The TCP port of the same number is bound but never listens, so a client's retry over
        # TCP is refused at once, whatever else listens on this machine.
        for _ in range(20):
            self.transport, self.port = loop.run(listen_udp(self.protocol))
            self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self._tcp.bind(("127.0.0.1", self.port))
            except OSError:
                self._tcp.close()
                loop.call(self.transport.close)
                continue
            break
        else:
            raise RuntimeError("no UDP port whose TCP twin is free")

    @property
    def queries(self) -> list[str]:
        """Every question asked so far, as ``"name TYPE"``."""
        return self.protocol.queries

    def close(self) -> None:
        """Stop answering (the socket closes in the server loop)."""
        self._loop.call(self.transport.close)
        self._tcp.close()
