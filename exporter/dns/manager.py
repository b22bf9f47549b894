"""DNS health on a schedule: one loop per sending domain and per relay host, on the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from exporter.config import Config, DomainConfig, check_domains
from exporter.dns.checks import DNSResolver, check_domain, check_relay_host
from exporter.dns.result import CheckStatus, DomainReport, RelayDNSReport
from exporter.dns.store import DNSStore
from exporter.tasks import FIRST_SPREAD, LOOP_CLOCK, Clock, cancel_and_wait, run_every

__all__ = ["DNSManager", "checkable", "log_changes"]

# Many relay hosts spread their first checks wider, so start-up asks at most this many host
# checks a second (each is several queries: A, AAAA, PTR, one per blocklist): 10,000 relays
# take 200 s instead of 10 s, and neither the resolver nor a blocklist sees a burst.
HOST_CHECK_RATE = 50.0
# RFC 6761 special-use names exist in no public DNS: only a resolver you configure knows them.
_SPECIAL_USE = ("localhost", "test", "invalid", "example")


def checkable(name: str, nameservers: tuple[tuple[str, int], ...]) -> bool:
    """Whether DNS checks of ``name`` mean anything: special-use names (.localhost, .test,
    .invalid, .example) only against configured nameservers, never the system resolver."""
    label = name.lower().rstrip(".").rpartition(".")[2]
    return bool(nameservers) or label not in _SPECIAL_USE

log = logging.getLogger(__name__)


def log_changes(subject: str, report: DomainReport | RelayDNSReport,
                previous: DomainReport | RelayDNSReport | None) -> None:
    """One log line per check whose status or message changed; problems at warning level."""
    before = {(c.check, c.selector, c.zone): c for c in previous.checks} if previous else {}
    for check in report.checks:
        old = before.get((check.check, check.selector, check.zone))
        if old is not None and (old.status, old.message) == (check.status, check.message):
            continue
        level = logging.INFO if check.status is CheckStatus.OK else logging.WARNING
        log.log(level, "dns check", extra={
            "subject": subject, "check": check.check, "selector": check.selector,
            "zone": check.zone, "status": check.status.value, "detail": check.message})


class DNSManager:
    """Keeps the DNS loops in step with the config; reports go to the DNSStore."""

    def __init__(self, store: DNSStore, *, clock: Clock = LOOP_CLOCK) -> None:
        self._store = store
        self._clock = clock
        self._tasks: dict[tuple[Any, ...], asyncio.Task[None]] = {}
        self._resolver: DNSResolver | None = None
        self._settings: tuple[Any, ...] | None = None
        # The first check of each domain and host starts at a random point of this window.
        self.first_spread = FIRST_SPREAD

    def apply(self, config: Config) -> None:
        settings = (config.dns, config.blocklists)
        if settings != self._settings:
            for task in self._tasks.values():
                task.cancel()
            self._tasks.clear()
            self._resolver = DNSResolver(nameservers=config.dns.nameservers,
                                         timeout=config.dns.timeout,
                                         max_ttl=config.dns.interval)
            self._settings = settings
        ns = config.dns.nameservers
        # A sending domain is checked by one shard: the one its name hashes to.
        domains = [d for d in check_domains(config.domains, config.relays)
                   if checkable(d.name, ns) and config.shard.owns(d.name)]
        relays = [r for r in config.relays if checkable(r.host, ns)]
        self._store.configure([d.name for d in domains], [(r.name, r.host) for r in relays])
        wanted: dict[tuple[Any, ...], Callable[[], Coroutine[Any, Any, None]]] = {}
        interval = config.dns.interval
        for domain in domains:
            wanted[("domain", domain)] = partial(self._domain_loop, domain, interval)
        spread = self.first_spread
        if len(relays) / HOST_CHECK_RATE > max(spread, FIRST_SPREAD):
            spread = len(relays) / HOST_CHECK_RATE
        for relay in relays:
            wanted[("relay", relay.name, relay.host, relay.egress_addresses)] = partial(
                self._relay_loop, relay.name, relay.host, config.blocklists,
                relay.egress_addresses, interval, spread)
        for key in list(self._tasks):
            if key not in wanted:
                self._tasks.pop(key).cancel()
        for key, make in wanted.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(make(), name=f"dns:{key[1]}")

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)

    async def _domain_loop(self, domain: DomainConfig, interval: float) -> None:
        previous: DomainReport | None = None

        async def run() -> None:
            nonlocal previous
            assert self._resolver is not None
            report = await check_domain(domain.name, resolver=self._resolver,
                                        dkim_selectors=domain.dkim_selectors,
                                        expect_spf_includes=domain.expect_spf_includes)
            self._store.record(report)
            log_changes(domain.name, report, previous)
            previous = report

        await run_every(interval, run, first_spread=self.first_spread, what="dns check",
                        clock=self._clock)

    async def _relay_loop(self, relay: str, host: str, blocklists: tuple[str, ...],
                          egress: tuple[str, ...], interval: float, spread: float) -> None:
        previous: RelayDNSReport | None = None

        async def run() -> None:
            nonlocal previous
            assert self._resolver is not None
            report = await check_relay_host(relay, host, resolver=self._resolver,
                                            blocklists=blocklists, egress=egress)
            self._store.record(report)
            log_changes(relay, report, previous)
            previous = report

        await run_every(interval, run, first_spread=spread, what="dns check", clock=self._clock)
