"""Resolve a relay host to addresses: the system resolver, or dnspython against set nameservers.

A failure says what happened (NXDOMAIN, SERVFAIL, a timeout, no nameserver answering), which
resolver was asked, and the fix: ``relay.test: no nameserver answered within 2s (asked
127.0.0.1:5300); check dns.nameservers or the network``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from functools import lru_cache

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.message
import dns.nameserver
import dns.resolver

__all__ = ["ResolveError", "resolve_host", "resolver_answers"]

SYSTEM = "the system resolver"
_FIX_HOST = "check the relay's host name"
_FIX_RESOLVER = "check dns.nameservers or the network"
_FIX_SYSTEM = "check /etc/resolv.conf and the network, or set dns.nameservers"


class ResolveError(Exception):
    """The host name did not resolve; the message says how (NXDOMAIN, SERVFAIL, timeout, no
    nameserver answered), which resolver was asked, and the fix."""


@lru_cache(maxsize=4096)
def _literal(host: str) -> str | None:
    """The address ``host`` spells (``[::1]``, ``127.0.0.1``), else None; parsed once per host
    name, not per probe."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def server_text(nameservers: tuple[tuple[str, int], ...]) -> str:
    """``127.0.0.1:5300, [::1]:53``: the nameservers as a person writes them."""
    return ", ".join(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                     for ip, port in nameservers)


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
        raise ResolveError(f"{host}: no nameserver answered within {timeout:.3g}s "
                           f"(asked {SYSTEM}); {_FIX_SYSTEM}") from None
    except socket.gaierror as exc:
        raise ResolveError(_gai_error(host, exc)) from None
    addrs: list[str] = []
    for family, *_, sockaddr in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in addrs:
            addrs.append(str(sockaddr[0]))
    if not addrs:
        raise ResolveError(f"{host}: no A or AAAA address (asked {SYSTEM}); {_FIX_HOST}")
    return addrs


def _gai_error(host: str, exc: socket.gaierror) -> str:
    if exc.errno == socket.EAI_NONAME:
        return (f"{host}: the name does not exist or has no address ({exc.strerror}; asked "
                f"{SYSTEM}); {_FIX_HOST}")
    if exc.errno == socket.EAI_AGAIN:
        return (f"{host}: SERVFAIL or no answer ({exc.strerror}; asked {SYSTEM}); "
                f"{_FIX_SYSTEM}")
    return f"{host}: {exc.strerror} (asked {SYSTEM}); check host and the DNS resolver"


async def _resolve_dnspython(
    host: str, nameservers: tuple[tuple[str, int], ...], timeout: float
) -> list[str]:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers]
    resolver.lifetime = timeout
    resolver.timeout = timeout
    deadline = time.perf_counter() + timeout
    # A and AAAA at once, so both fit in one timeout (one after the other, a silent
    # nameserver took twice the probe's budget and the probe ended as a plain timeout).
    lookup = asyncio.gather(
        *(resolver.resolve(host, rdtype, search=False) for rdtype in ("A", "AAAA")),
        return_exceptions=True,
    )
    # Half-way without an answer: ask the nameservers anything, to tell a resolver that is
    # down from one that answers, but not for this name.
    alive: asyncio.Task[bool] | None = None
    try:
        done, _ = await asyncio.wait({lookup}, timeout=timeout / 2)
        if not done:
            alive = asyncio.create_task(
                resolver_answers(nameservers, max(0.0, deadline - time.perf_counter())))
        answers = await lookup
    finally:
        lookup.cancel()  # a no-op once it is done; else this task was cancelled
        if alive is not None and not alive.done():
            alive.cancel()
    up = alive is not None and alive.done() and not alive.cancelled() and alive.result()
    asked = f"asked {server_text(nameservers)}"
    addrs: list[str] = []
    errors: list[str] = []
    for answer in answers:
        if isinstance(answer, dns.resolver.NXDOMAIN):
            raise ResolveError(f"{host}: NXDOMAIN, the name does not exist ({asked}); "
                               f"{_FIX_HOST}")
        if isinstance(answer, dns.resolver.NoAnswer):
            continue
        if isinstance(answer, dns.resolver.NoNameservers):
            errors.append(_no_nameservers(answer, asked))
        elif isinstance(answer, dns.exception.Timeout):
            errors.append(_timeout(timeout, asked, resolver_up=up))
        elif isinstance(answer, BaseException):
            errors.append(f"{type(answer).__name__}: {answer} ({asked}); "
                          "check host and the DNS resolver")
        else:
            addrs.extend(r.to_text() for r in answer)
    if addrs:
        return addrs
    if errors:
        raise ResolveError(f"{host}: {errors[0]}")
    raise ResolveError(f"{host}: no A or AAAA record ({asked}); {_FIX_HOST}")


def _timeout(timeout: float, asked: str, *, resolver_up: bool) -> str:
    if resolver_up:
        return (f"timeout after {timeout:.3g}s: the resolver answers, but not for this name "
                f"({asked}); the name's nameservers do not answer: check the host's DNS")
    return f"no nameserver answered within {timeout:.3g}s ({asked}); {_FIX_RESOLVER}"


def _no_nameservers(exc: dns.resolver.NoNameservers, asked: str) -> str:
    """Why no nameserver answered: SERVFAIL, or a truncated answer whose TCP retry failed."""
    tried = exc.kwargs.get("errors") or []
    problems = [str(error) for _, _, _, error, _ in tried]
    if any(p == "SERVFAIL" for p in problems):
        return (f"SERVFAIL from every nameserver ({asked}); the name's nameservers are "
                "failing, or the resolver cannot reach them: check the host's DNS")
    truncated = any(type(error).__name__ == "Truncated" for _, _, _, error, _ in tried)
    tcp = [error for _, over_tcp, _, error, _ in tried if over_tcp]
    if truncated and tcp:
        last = tcp[-1]
        why = os.strerror(last.errno) if isinstance(last, OSError) and last.errno else last
        return (f"truncated answer over UDP, and the retry over TCP failed: {why} ({asked}); "
                "the resolver must answer over TCP too: check dns.nameservers")
    text = "; ".join(dict.fromkeys(problems))[:200]
    return f"no nameserver answered: {text} ({asked}); {_FIX_RESOLVER}"


async def resolver_answers(nameservers: tuple[tuple[str, int], ...], timeout: float) -> bool:
    """True when any of ``nameservers`` answers a question about the root at all (any rcode)
    within ``timeout``: the resolver is up, whatever it says about a given name."""
    query = dns.message.make_query(".", "NS")

    async def one(ip: str, port: int) -> bool:
        try:
            await dns.asyncquery.udp(query, ip, timeout=timeout, port=port,
                                     ignore_unexpected=True)
        except (dns.exception.DNSException, OSError, ValueError):
            return False
        return True

    if timeout <= 0 or not nameservers:
        return False
    results = await asyncio.gather(*(one(ip, port) for ip, port in nameservers))
    return any(results)
