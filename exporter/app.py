"""Wires config, store, scheduler, collector and web server together; reloads and signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import replace

from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from exporter.canary import CanaryManager, CanaryStore
from exporter.config import ONE_SHARD, Config, ConfigError, Shard, config_for_shard, load_config
from exporter.dns import DNSManager, DNSSnapshot, DNSStore, DomainReport, RelayDNSReport
from exporter.heap import settle_heap
from exporter.histogram import PHASE_BUCKETS
from exporter.metrics import ExporterCollector
from exporter.relay import ProbeFn, RelayInfo, ResultStore, Scheduler, Snapshot, TargetProber
from exporter.tasks import LOOP_CLOCK, Clock, LoopLagMonitor, SchedulingSnapshot, cancel_and_wait
from exporter.web import ProbeEndpoint, ProbeRequests, WebGuard, WebServer

__all__ = ["App", "relay_infos", "startup_summary"]

log = logging.getLogger(__name__)


def relay_infos(config: Config) -> list[RelayInfo]:
    """The static facts of each relay that labels and the status page show."""
    return [
        RelayInfo(
            name=r.name,
            host=r.host,
            port=r.port,
            tls=r.tls.value,
            auth=r.auth.mechanism.value,
            preset=r.preset or "",
            tls_verify=r.tls_verify,
            expect=r.expect.value if r.expect else "",
            oauth2=r.auth.oauth2 is not None,
            phase_histograms=r.metrics.phase_histograms,
            phase_buckets=r.metrics.buckets or PHASE_BUCKETS,
        )
        for r in config.relays
    ]


def _names(names: list[str], most: int = 10) -> str:
    shown = ", ".join(sorted(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _has_error(report: DomainReport | RelayDNSReport | None) -> bool:
    return report is not None and any(c.status.value == "error" for c in report.checks)


def startup_summary(relays: Snapshot, dns: DNSSnapshot) -> dict[str, object]:
    """The fields of the one line that closes the first round: how many relays and domains,
    and which of them fail (a failed probe, or a DNS check in error; warnings are left to
    their own lines)."""
    failing = {name for name, r in relays.relays.items()
               if r.last is not None and not r.last.success}
    failing |= {name for name, report in dns.relays.items() if _has_error(report)}
    domains = [name for name, report in dns.domains.items() if _has_error(report)]
    problems = []
    if failing:
        problems.append(f"{_plural(len(failing), 'relay')} failing ({_names(list(failing))})")
    if domains:
        problems.append(f"{_plural(len(domains), 'domain')} failing DNS checks "
                        f"({_names(domains)})")
    head = f"{_plural(len(relays.relays), 'relay')}, {_plural(len(dns.domains), 'domain')}"
    text = f"{head}: {'; '.join(problems) if problems else 'all ok'}"
    return {"summary": text, "relays": len(relays.relays), "domains": len(dns.domains),
            "failing_relays": len(failing), "failing_domains": len(domains)}


class App:
    """The running exporter. ``start`` raises ConfigError if the first config is invalid."""

    def __init__(
        self,
        config_path: str,
        *,
        listen: tuple[str, int] = ("", 9925),
        registry: CollectorRegistry | None = None,
        environ: Mapping[str, str] | None = None,
        probe: ProbeFn | None = None,
        location: str = "",
        web_config: str | None = None,
        clock: Clock = LOOP_CLOCK,
        shard: Shard = ONE_SHARD,
        freeze_heap: bool = False,
    ) -> None:
        self.config_path = config_path
        # The daemon freezes each adopted config's objects out of the garbage collector's
        # way (heap.py); an App embedded in another program (the tests) leaves its GC alone.
        self.freeze_heap = freeze_heap
        self.location = location
        self.shard = shard
        self.web_config = web_config
        self.listen = listen
        self.environ = environ
        self.registry = registry if registry is not None else CollectorRegistry()
        self.store = ResultStore()
        self.scheduler = (
            Scheduler(self.store, clock=clock)
            if probe is None
            else Scheduler(self.store, probe=probe, clock=clock)
        )
        self.canary_store = CanaryStore()
        self.canaries = CanaryManager(self.canary_store, clock=clock)
        self.dns_store = DNSStore()
        self.dns = DNSManager(self.dns_store, clock=clock)
        # /probe: its probes share the schedule's max_concurrent_probes limit.
        self.targets = (TargetProber(self.scheduler.limiter) if probe is None
                        else TargetProber(self.scheduler.limiter, probe=probe))
        self.probe_requests = ProbeRequests()
        self.config: Config | None = None
        self.web: WebServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.loop_lag = LoopLagMonitor()
        self._background: list[asyncio.Task[None]] = []

    def scheduling(self) -> SchedulingSnapshot:
        """The scheduler's health for /metrics: lag per kind, the loop's lag, probes running."""
        return SchedulingSnapshot(
            lag={"probe": self.scheduler.lag.snapshot(), "canary": self.canaries.lag.snapshot(),
                 "dns": self.dns.lag.snapshot()},
            loop_lag=self.loop_lag.lag.snapshot(),
            probes_in_flight=self.scheduler.limiter.active,
        )

    async def _log_first_round(self) -> None:
        """Once every relay was probed and every domain and host checked: one summary line."""
        await self.scheduler.first_round.wait()
        await self.dns.first_round.wait()
        fields = startup_summary(self.store.snapshot(), self.dns_store.snapshot())
        log.info("first round done", extra=fields)

    def _load(self) -> Config:
        config = load_config(self.config_path, environ=self.environ)
        if self.location:
            config = replace(config, location=self.location)
        return config_for_shard(config, self.shard)

    def _adopt(self, config: Config) -> None:
        self.store.configure(
            relay_infos(config),
            warnings=[str(w) for w in config.warnings],
            source=os.path.abspath(self.config_path),
            instance=config.instance,
            location=config.location,
            shard=config.shard,
        )
        self.scheduler.apply(config)
        self.canaries.apply(config)
        self.dns.apply(config)
        self.config = config
        if self.freeze_heap:
            settle_heap()
        for warning in config.warnings:
            log.warning("config warning", extra={"problem": str(warning)})

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        guard = await asyncio.to_thread(WebGuard, self.web_config)
        config = await asyncio.to_thread(self._load)
        collector = ExporterCollector(self.store.snapshot, self.canary_store.snapshot,
                                      self.dns_store.snapshot, scheduling=self.scheduling)
        # The listen address is bound before any probe, canary or mailbox starts, so a busy
        # port fails alone (OSError) and nothing has run yet.
        self.web = WebServer(
            self.listen,
            registry=self.registry,
            snapshot=self.store.snapshot,
            reload=self.reload_from_thread,
            ready=lambda: self.config is not None and not self._stopping.is_set(),
            canaries=self.canary_store.snapshot,
            dns=self.dns_store.snapshot,
            guard=guard,
            probe=ProbeEndpoint(config=lambda: self.config, prober=self.targets,
                                loop=self._loop, requests=self.probe_requests),
            exposition=lambda accept: collector.render(self.registry, accept),
        )
        self._adopt(config)
        self.registry.register(collector)
        self.registry.register(self.probe_requests)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.web.start()
        self._background = [
            asyncio.create_task(self.loop_lag.run(), name="event-loop-lag"),
            asyncio.create_task(self._log_first_round(), name="first-round-summary"),
        ]
        assert self.config is not None
        log.info(
            "exporter started",
            extra={"listen": f"{self.listen[0] or '*'}:{self.web.port}",
                   "relays": len(self.config.relays), "instance": self.config.instance,
                   "location": self.config.location or "-",
                   "shard": self.shard.index, "total_shards": self.shard.total,
                   "scheme": self.web.scheme,
                   "basic_auth": bool(guard.config().users)},
        )

    async def reload(self) -> tuple[bool, str]:
        """Load the config file again; an invalid file is refused and the old one keeps running."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(self._load)
            except ConfigError as exc:
                self.store.reload_failed()
                for problem in exc.problems:
                    log.error("config reload refused", extra={"problem": str(problem)})
                return False, "config reload refused, the previous config keeps running:\n" + str(
                    exc
                )
            self._adopt(config)
            log.info("config reloaded", extra={"relays": len(config.relays)})
            count = len(config.relays)
            of_shard = f" ({self.shard})" if self.shard.sharded else ""
            return True, f"config reloaded: {count} relay{'' if count == 1 else 's'}{of_shard}"

    def reload_from_thread(self) -> tuple[bool, str]:
        """For the HTTP thread: run ``reload`` on the event loop and wait for its answer."""
        if self._loop is None:
            return False, "not started"
        future = asyncio.run_coroutine_threadsafe(self.reload(), self._loop)
        return future.result(timeout=60)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)

    async def wait(self) -> None:
        await self._stopping.wait()

    async def stop(self) -> None:
        self._stopping.set()
        await self.scheduler.stop()
        await self.canaries.stop()
        await self.dns.stop()
        await cancel_and_wait(self._background)
        if self.web is not None:
            await asyncio.to_thread(self.web.stop)
        log.info("exporter stopped")
