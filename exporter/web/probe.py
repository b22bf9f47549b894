"""``/probe?target=HOST:PORT&module=NAME``, the multi-target pattern: Prometheus picks the
targets, each request runs one probe now and answers with that probe's metrics only (or, with
``debug=true``, its transcript as text). Requests are counted per module and result."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.config import (
    Config,
    ModuleConfig,
    RelayConfig,
    find_module,
    parse_target,
    preset_names,
    relay_for_target,
)
from exporter.peertext import clean, visible
from exporter.relay import RelayResult, TargetProber, format_table, probe_families

__all__ = ["MARGIN", "BadProbeRequest", "ProbeAnswer", "ProbeEndpoint", "ProbeRequests",
           "read_request"]

log = logging.getLogger(__name__)

# Taken off Prometheus's scrape timeout, so the answer is on its way before Prometheus gives
# up: the probe's own timeout is at most the header's value minus this.
MARGIN = 0.5
HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
_PARAMS = ("target", "module", "debug")
_CREDENTIALS = frozenset({"user", "username", "password", "pass", "passwd", "token", "secret",
                          "auth", "authorization", "api_key", "apikey", "key",
                          "client_secret", "refresh_token"})
RESULTS = ("success", "failure", "bad_request", "busy")
_LISTED_PRESETS = frozenset(preset_names())
SES_PRESETS = "ses-<region>"  # the label of every Amazon SES region's preset
# How long past the probe's budget the HTTP thread waits for the event loop's answer.
_SLACK = 10.0


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """What the HTTP handler sends back."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class _Request:
    module: ModuleConfig
    target: str
    relay: RelayConfig  # its timeout is the probe's budget
    debug: bool


class BadProbeRequest(ValueError):
    """A /probe request that cannot run; the message is one line for the 400 answer."""


def _text(status: int, line: str) -> ProbeAnswer:
    return ProbeAnswer(status, (clean(line, limit=300) + "\n").encode(),
                       "text/plain; charset=utf-8")


def _budget(module: ModuleConfig, header: str | None) -> float:
    """The module's timeout, or less: the scrape timeout header minus MARGIN (half of a
    header of one second or less)."""
    if header is None or not header.strip():
        return module.timeout
    try:
        scrape = float(header)
    except ValueError:
        raise BadProbeRequest(f"{HEADER} {header!r} is not a number of seconds") from None
    if not math.isfinite(scrape) or scrape <= 0:
        raise BadProbeRequest(f"{HEADER} {header!r} must be a positive number of seconds")
    return min(module.timeout, scrape - MARGIN if scrape > 2 * MARGIN else scrape / 2)


def read_request(query: str, header: str | None, config: Config) -> _Request:
    """The probe a query asks for; raises BadProbeRequest saying what to fix."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, max_num_fields=10)
    except ValueError:
        raise BadProbeRequest("too many parameters; /probe takes target, module and "
                              "debug") from None
    params: dict[str, str] = {}
    for key, item in pairs:
        if key.lower() in _CREDENTIALS:
            raise BadProbeRequest(f'parameter "{key}" refused: credentials come only from the '
                                  "module's auth in the config file")
        if key not in _PARAMS:
            raise BadProbeRequest(f'unknown parameter "{key}"; /probe takes target, module '
                                  "and debug")
        if key in params:
            raise BadProbeRequest(f'parameter "{key}" given twice; give it once')
        params[key] = item
    name = params.get("module", "")
    if not name:
        raise BadProbeRequest("module missing; add &module=NAME, a key of modules: in the "
                              "config or a preset name such as sendgrid")
    module = find_module(config, name)
    if module is None:
        known = ", ".join(m.name for m in config.modules[:10]) or "none configured"
        raise BadProbeRequest(f'unknown module "{name}"; use a key of modules: ({known}) or '
                              "a preset name such as sendgrid")
    if "target" not in params:
        raise BadProbeRequest("target missing; add &target=HOST:PORT, e.g. "
                              "smtp.example.com:587")
    try:
        host, port = parse_target(params["target"])
    except ValueError as exc:
        raise BadProbeRequest(str(exc)) from None
    debug = params.get("debug", "false").lower()
    if debug not in ("true", "false"):
        raise BadProbeRequest(f'debug={params["debug"]!r}: use debug=true or leave it out')
    budget = _budget(module, header)
    relay = relay_for_target(module, host, port, timeout=budget)
    return _Request(module, params["target"], relay, debug == "true")


class ProbeRequests(Collector):
    """``smtp_exporter_probe_requests_total{module,result}``: modules are the configured
    ones and presets that were asked for (every SES region as one); a refused request counts
    under module=""."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._modules: Callable[[], tuple[str, ...]] = tuple

    def watch(self, modules: Callable[[], tuple[str, ...]]) -> None:
        """Configured module names, whose series exist (at 0) before their first request."""
        self._modules = modules

    def count(self, module: str, result: str) -> None:
        with self._lock:
            self._counts[module, result] = self._counts.get((module, result), 0) + 1

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
        family = CounterMetricFamily("smtp_exporter_probe_requests_total",
                                     "/probe requests answered, by module and result "
                                     "(success, failure, bad_request, busy).",
                                     labels=["module", "result"])
        modules = {module for module, _ in counts} | set(self._modules())
        for module in sorted(modules):
            for result in RESULTS if module else ("bad_request",):
                family.add_metric([module, result], counts.get((module, result), 0))
        yield family


def _label(config: Config, name: str) -> str:
    """The module label of a request: configured modules and the listed presets by name, any
    SES region as "ses-<region>", so no request can make a new series but from the config."""
    if name in _LISTED_PRESETS or any(m.name == name for m in config.modules):
        return name
    return SES_PRESETS


class _OneProbe(Collector):
    """A collector for a fresh registry: the families of one probe."""

    def __init__(self, result: RelayResult, timeout: float) -> None:
        self._result = result
        self._timeout = timeout

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        yield from probe_families(self._result, timeout=self._timeout)


class ProbeEndpoint:
    """Answers /probe from the HTTP threads; the probes run on the exporter's event loop."""

    def __init__(self, *, config: Callable[[], Config | None], prober: TargetProber,
                 loop: asyncio.AbstractEventLoop, requests: ProbeRequests | None = None) -> None:
        self._config = config
        self._prober = prober
        self._loop = loop
        self.requests = requests or ProbeRequests()
        self.requests.watch(self._module_names)

    def _module_names(self) -> tuple[str, ...]:
        config = self._config()
        return tuple(m.name for m in config.modules) if config else ()

    def answer(self, query: str, header: str | None, accept: str = "") -> ProbeAnswer:
        """The answer to ``GET /probe?query`` with the scrape timeout ``header``."""
        config = self._config()
        if config is None:
            return _text(503, "not ready: no configuration loaded yet")
        try:
            request = read_request(query, header, config)
        except BadProbeRequest as exc:
            self.requests.count("", "bad_request")
            return _text(400, str(exc))
        relay = request.relay
        future = asyncio.run_coroutine_threadsafe(
            self._prober.probe(relay, budget=relay.timeout, nameservers=config.dns.nameservers,
                               dns_timeout=config.dns.timeout), self._loop)
        try:
            result = future.result(timeout=relay.timeout + _SLACK)
        except concurrent.futures.TimeoutError:
            future.cancel()
            result = None
        name = _label(config, request.module.name)
        if result is None:
            self.requests.count(name, "busy")
            return _text(503, f"no probe slot came free within {relay.timeout:g}s: all "
                              f"max_concurrent_probes={config.max_concurrent_probes} are busy")
        self.requests.count(name, "success" if result.success else "failure")
        log.debug("probe request answered", extra={
            "module": name, "target": visible(request.target), "success": result.success,
            "reason": result.reason.value if result.reason else None})
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_OneProbe(result, relay.timeout))
        if request.debug:
            return ProbeAnswer(200, _debug_text(request, result, registry).encode("utf-8"),
                               "text/plain; charset=utf-8")
        encoder, content_type = choose_encoder(accept)
        return ProbeAnswer(200, encoder(registry), content_type)


def _debug_text(request: _Request, result: RelayResult, registry: CollectorRegistry) -> str:
    """The probe as a person reads it: module, timeout, the table with the transcript (AUTH
    payloads already masked by the session), then the metrics a scrape would get."""
    encoder, _ = choose_encoder("")
    relay = request.relay
    lines = [
        f"Probe of {visible(request.target)} with module {request.module.name}",
        f"  host {visible(relay.host)} port {relay.port} tls {relay.tls.value}, "
        f"timeout {relay.timeout:g}s (module {request.module.timeout:g}s), "
        f"auth {relay.auth.mechanism.value}",
        "",
        format_table([result], transcript=True).rstrip("\n"),
        "",
        "Metrics that would have been returned:",
        encoder(registry).decode("utf-8"),
    ]
    return "\n".join(lines)
