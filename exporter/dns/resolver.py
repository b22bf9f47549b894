"""A caching DNS resolver for the DNS checks: answers as values, kept for their TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.message
import dns.nameserver
import dns.rdatatype
import dns.resolver

from exporter.smtp import resolver_answers

__all__ = ["Answer", "DNSResolver", "Outcome", "failure_message"]

Outcome = Literal["ok", "nxdomain", "nodata", "servfail", "timeout", "error"]
NEGATIVE_TTL = 60.0  # when a negative answer carries no SOA


@dataclass(frozen=True, slots=True)
class Answer:
    """The records of one query as text (TXT strings joined), their TTL and the outcome."""

    name: str
    rdtype: str
    outcome: Outcome
    records: tuple[str, ...] = ()
    ttl: float = 0.0
    detail: str = ""  # what went wrong, for outcome "error"
    # For a timeout when the resolver itself answers nothing at all: which one, and the fix.
    silent_resolver: str = ""

    @property
    def failed(self) -> bool:
        """True when the lookup failed (SERVFAIL, timeout, error): not the same as absent."""
        return self.outcome in ("servfail", "timeout", "error")


def failure_message(answer: Answer, owner: str = "the domain's nameservers") -> str:
    """One line for a failed lookup, never phrased as a missing record."""
    if answer.outcome == "servfail":
        return f"SERVFAIL looking up {answer.name}; {owner} are failing"
    if answer.outcome == "timeout" and answer.silent_resolver:
        return f"timeout looking up {answer.name}: {answer.silent_resolver}"
    if answer.outcome == "timeout":
        return f"timeout looking up {answer.name}; {owner} do not answer"
    return f"DNS error looking up {answer.name} ({answer.detail}); check the resolver"


class DNSResolver:
    """dnspython's asyncio resolver with a TTL cache; given nameservers, else the system's.

    Positive answers are kept for min(TTL, max_ttl), negative ones (NXDOMAIN, no data) for
    the SOA minimum TTL (60 s without an SOA) bounded by max_ttl; failures are never kept.
    """

    def __init__(
        self,
        *,
        nameservers: tuple[tuple[str, int], ...] = (),
        timeout: float = 5.0,
        max_ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers
            ]
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._timeout = timeout
        self._servers = _servers(self._resolver)
        listed = ", ".join(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
                           for ip, port in self._servers)
        self.asked = (f"the resolver {listed} (dns.nameservers)" if nameservers
                      else f"the system resolver ({listed or 'none in /etc/resolv.conf'})")
        self._fix = ("check dns.nameservers or the network" if nameservers
                     else "check /etc/resolv.conf and the network, or set dns.nameservers")
        self._answered_at = -1.0  # monotonic time of the resolver's latest reply of any kind
        self._alive_check: tuple[float, asyncio.Task[bool]] | None = None
        self._max_ttl = max_ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Answer]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Future[Answer]] = {}
        self.lookups = 0  # queries that went to the network

    async def query(self, name: str, rdtype: str) -> Answer:
        """The answer for ``name``/``rdtype``, from the cache while its TTL lasts; never raises
        for a DNS failure (the outcome says what happened)."""
        key = (name.rstrip(".").lower(), rdtype.upper())
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await self._lookup(*key)
            future.set_result(answer)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, no "never retrieved" warning
            raise
        finally:
            del self._inflight[key]
        if not answer.failed:
            keep = min(answer.ttl, self._max_ttl)
            if keep > 0:
                self._cache[key] = (self._clock() + keep, answer)
        return answer

    async def _lookup(self, name: str, rdtype: str) -> Answer:
        self.lookups += 1
        asked_at = time.monotonic()
        answer = await self._ask(name, rdtype)
        if answer.outcome != "timeout":
            self._answered_at = time.monotonic()
        elif self._answered_at < asked_at and not await self._resolver_answers(asked_at):
            silent = (f"{self.asked} did not answer within {self._timeout:g}s, nor to a "
                      f"query for the root; {self._fix}")
            return Answer(name, rdtype, "timeout", detail=answer.detail, silent_resolver=silent)
        return answer

    async def _resolver_answers(self, since: float) -> bool:
        """Whether the resolver replies at all (any rcode) to a query asked after ``since``;
        concurrent timeouts share one such query."""
        if self._alive_check is None or self._alive_check[0] < since:
            task = asyncio.create_task(resolver_answers(self._servers, self._timeout))
            self._alive_check = (time.monotonic(), task)
        return await asyncio.shield(self._alive_check[1])

    async def _ask(self, name: str, rdtype: str) -> Answer:
        try:
            result = await self._resolver.resolve(
                name, rdtype, search=False, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN as exc:
            return Answer(name, rdtype, "nxdomain", ttl=_negative_ttl(_responses(exc)))
        except dns.resolver.NoNameservers as exc:
            outcome: Outcome = "servfail" if "SERVFAIL" in str(exc) else "error"
            return Answer(name, rdtype, outcome, detail=_first_line(exc))
        except dns.exception.Timeout:
            return Answer(name, rdtype, "timeout", detail=f"no answer within {self._timeout:g}s")
        except dns.exception.DNSException as exc:
            return Answer(name, rdtype, "error", detail=_first_line(exc))
        if result.rrset is None:
            return Answer(name, rdtype, "nodata", ttl=_negative_ttl([result.response]))
        records = tuple(_text(rdata) for rdata in result.rrset)
        return Answer(name, rdtype, "ok", records, float(result.rrset.ttl))


def _responses(exc: dns.resolver.NXDOMAIN) -> list[dns.message.Message]:
    responses = exc.kwargs.get("responses") or {}
    return [r for r in responses.values() if isinstance(r, dns.message.Message)]


def _negative_ttl(responses: list[dns.message.Message]) -> float:
    for response in responses:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
                return float(min(rrset.ttl, rrset[0].minimum))
    return NEGATIVE_TTL


def _text(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)
    if isinstance(strings, tuple) and getattr(rdata, "rdtype", None) in (
        dns.rdatatype.TXT, dns.rdatatype.SPF
    ):
        return b"".join(strings).decode("utf-8", "replace")
    return str(rdata)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _servers(resolver: dns.asyncresolver.Resolver) -> tuple[tuple[str, int], ...]:
    """The resolver's plain-DNS nameservers as (address, port)."""
    found: list[tuple[str, int]] = []
    for server in resolver.nameservers:
        if isinstance(server, str):
            found.append((server, resolver.port))
        elif isinstance(server, dns.nameserver.Do53Nameserver):
            found.append((server.address, server.port))
    return tuple(found)

