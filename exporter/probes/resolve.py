"""Resolve a relay host to addresses: the system resolver, or dnspython against set nameservers."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

__all__ = ["ResolveError", "resolve_host"]


class ResolveError(Exception):
    """The host name did not resolve; the message says how (NXDOMAIN, SERVFAIL, timeout)."""


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def resolve_host(
    host: str, *, nameservers: tuple[tuple[str, int], ...] = (), timeout: float
) -> list[str]:
    """Addresses of ``host`` in preference order; IPv4 first, as most relays publish it."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    if nameservers:
        return await _resolve_dnspython(host, nameservers, timeout)
    return await _resolve_system(host, timeout)


async def _resolve_system(host: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise ResolveError(f"{host}: resolver timed out after {timeout:g}s") from None
    except socket.gaierror as exc:
        raise ResolveError(f"{host}: {exc.strerror}") from None
    addrs: list[str] = []
    for family, *_, sockaddr in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addrs:
            addrs.append(str(sockaddr[0]))
    if not addrs:
        raise ResolveError(f"{host}: no A or AAAA address")
    return addrs


async def _resolve_dnspython(
    host: str, nameservers: tuple[tuple[str, int], ...], timeout: float
) -> list[str]:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    resolver.lifetime = timeout
    resolver.timeout = timeout
    addrs: list[str] = []
    errors: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise ResolveError(f"{host}: no such domain (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            continue
        except dns.resolver.NoNameservers:
            errors.append("SERVFAIL from every nameserver")
        except dns.exception.Timeout:
            errors.append(f"no answer within {timeout:g}s")
        else:
            addrs.extend(r.to_text() for r in answer)
    if addrs:
        return addrs
    if errors:
        raise ResolveError(f"{host}: {errors[0]}")
    raise ResolveError(f"{host}: no A or AAAA record")
