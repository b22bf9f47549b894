"""When the configured resolver itself does not answer, DNS findings name it instead of
blaming the domain's nameservers (a live resolver silent about one name still blames them:
tests/dns/test_dns_checks.py, slow.test)."""

from __future__ import annotations

import socket
import time

from exporter.dns.checks import DNSResolver, check_domain, check_relay_host
from exporter.dns.result import CheckName, CheckStatus


def closed_udp_port() -> int:
    """A loopback UDP port nothing listens on: a nameserver that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_dead_resolver_is_named_in_the_relay_host_finding() -> None:
    """The address check of a relay host, asked of a nameserver that is down, is an error
    naming that nameserver and dns.nameservers, not the domain's nameservers."""
    port = closed_udp_port()
    resolver = DNSResolver(nameservers=(("127.0.0.1", port),), timeout=0.5)
    start = time.monotonic()
    report = await check_relay_host("r", "relay.test", resolver=resolver)
    assert time.monotonic() - start < 2.0
    address = report.checks[0]
    assert address.check is CheckName.ADDRESS
    assert address.status is CheckStatus.ERROR
    assert address.message == (
        f"timeout looking up relay.test: the resolver 127.0.0.1:{port} (dns.nameservers) did "
        "not answer within 0.5s, nor to a query for the root; check dns.nameservers or the "
        "network")


async def test_a_dead_resolver_is_named_in_every_domain_finding() -> None:
    """Every check of a sending domain asked of a dead nameserver names the resolver; none
    says the domain's nameservers do not answer."""
    port = closed_udp_port()
    resolver = DNSResolver(nameservers=(("127.0.0.1", port),), timeout=0.5)
    report = await check_domain("example.test", resolver=resolver)
    for check in report.checks:
        assert check.status is not CheckStatus.OK, check
        assert f"the resolver 127.0.0.1:{port} (dns.nameservers) did not answer" in \
            check.message, check
        assert "the domain's nameservers" not in check.message, check

