"""Resolve a relay host to addresses: the system resolver, or dnspython against set nameservers."""

from __future__ import annotations

import asyncio
import ipaddress
import os
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
    # A and AAAA at once, so both fit in one timeout (one after the other, a silent
    # nameserver took twice the probe's budget and the probe ended as a plain timeout).
    answers = await asyncio.gather(
        *(resolver.resolve(host, rdtype, search=False) for rdtype in ("A", "AAAA")),
        return_exceptions=True,
    )
    addrs: list[str] = []
    errors: list[str] = []
    for answer in answers:
        if isinstance(answer, dns.resolver.NXDOMAIN):
            raise ResolveError(f"{host}: no such domain (NXDOMAIN)")
        if isinstance(answer, dns.resolver.NoAnswer):
            continue
        if isinstance(answer, dns.resolver.NoNameservers):
            errors.append(_no_nameservers(answer))
        elif isinstance(answer, dns.exception.Timeout):
            errors.append(f"no answer within {timeout:.3g}s")
        elif isinstance(answer, BaseException):
            errors.append(f"{type(answer).__name__}: {answer}")
        else:
            addrs.extend(r.to_text() for r in answer)
    if addrs:
        return addrs
    if errors:
        raise ResolveError(f"{host}: {errors[0]}")
    raise ResolveError(f"{host}: no A or AAAA record")


def _no_nameservers(exc: dns.resolver.NoNameservers) -> str:
    """Why no nameserver answered: SERVFAIL, or a truncated answer whose TCP retry failed."""
    tried = exc.kwargs.get("errors") or []
    problems = [str(error) for _, _, _, error, _ in tried]
    if any(p == "SERVFAIL" for p in problems):
        return "SERVFAIL from every nameserver"
    truncated = any(type(error).__name__ == "Truncated" for _, _, _, error, _ in tried)
    tcp = [error for _, over_tcp, _, error, _ in tried if over_tcp]
    if truncated and tcp:
        last = tcp[-1]
        why = os.strerror(last.errno) if isinstance(last, OSError) and last.errno else last
        return f"truncated answer over UDP, and the retry over TCP failed ({why})"
    return "no nameserver answered: " + "; ".join(dict.fromkeys(problems))[:200]
