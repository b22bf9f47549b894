"""DNS health on a schedule: one loop per sending domain and per relay host, on the event loop,
each at a fixed offset in its interval from a hash of its name."""

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
from exporter.tasks import (
    LOOP_CLOCK,
    Clock,
    LagRecorder,
    cancel_and_wait,
    first_window,
    run_every,
)

__all__ = ["DNSManager", "checkable", "log_changes"]

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
    """One log line per check whose status or message changed: a problem at warning, a
    recovery at info; a first result that is ok, or an ok whose text changed, at debug, so a
    healthy start logs nothing per check."""
    before = {(c.check, c.selector, c.zone): c for c in previous.checks} if previous else {}
    for check in report.checks:
        old = before.get((check.check, check.selector, check.zone))
        if old is not None and (old.status, old.message) == (check.status, check.message):
            continue
        if check.status is not CheckStatus.OK:
            level = logging.WARNING
        elif old is not None and old.status is not CheckStatus.OK:
            level = logging.INFO
        else:
            level = logging.DEBUG
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
        # The first check of each domain and host starts at its name's offset within this
        # window (by default first_window of their number), or its interval if shorter.
        self.first_spread: float | None = None
        self._window = first_window(0)
        self.lag = LagRecorder()  # how late checks start
        self._unchecked: set[tuple[Any, ...]] = set()
        self._checked_once: set[tuple[Any, ...]] = set()
        self.first_round = asyncio.Event()  # set once every domain and host was checked once

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
            key: tuple[Any, ...] = ("domain", domain)
            wanted[key] = partial(self._domain_loop, domain, interval, key)
        for relay in relays:
            key = ("relay", relay.name, relay.host, relay.egress_addresses)
            wanted[key] = partial(self._relay_loop, relay.name, relay.host, config.blocklists,
                                  relay.egress_addresses, interval, key)
        self._window = (first_window(len(wanted)) if self.first_spread is None
                        else self.first_spread)
        for key in list(self._tasks):
            if key not in wanted:
                self._tasks.pop(key).cancel()
        for key, make in wanted.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(make(), name=f"dns:{key[1]}")
        if not self.first_round.is_set():
            self._unchecked = set(wanted) - self._checked_once
            self._done_once(None)

    def _done_once(self, key: tuple[Any, ...] | None) -> None:
        if self.first_round.is_set():
            return
        if key is not None:
            self._checked_once.add(key)
            self._unchecked.discard(key)
        if not self._unchecked:
            self.first_round.set()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)

    async def _domain_loop(self, domain: DomainConfig, interval: float,
                           key: tuple[Any, ...]) -> None:
        previous: DomainReport | None = None

        async def run(due: float) -> None:
            nonlocal previous
            assert self._resolver is not None
            self.lag.late(due, self._clock.now())
            report = await check_domain(domain.name, resolver=self._resolver,
                                        dkim_selectors=domain.dkim_selectors,
                                        expect_spf_includes=domain.expect_spf_includes)
            self._store.record(report)
            log_changes(domain.name, report, previous)
            previous = report
            self._done_once(key)

        await run_every(interval, run, key=f"dns-domain:{domain.name}",
                        first_spread=self._window, what="dns check", clock=self._clock)

    async def _relay_loop(self, relay: str, host: str, blocklists: tuple[str, ...],
                          egress: tuple[str, ...], interval: float,
                          key: tuple[Any, ...]) -> None:
        previous: RelayDNSReport | None = None

        async def run(due: float) -> None:
            nonlocal previous
            assert self._resolver is not None
            self.lag.late(due, self._clock.now())
            report = await check_relay_host(relay, host, resolver=self._resolver,
                                            blocklists=blocklists, egress=egress)
            self._store.record(report)
            log_changes(relay, report, previous)
            previous = report
            self._done_once(key)

        await run_every(interval, run, key=f"dns-relay:{relay}",
                        first_spread=self._window, what="dns check", clock=self._clock)
