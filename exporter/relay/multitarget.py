"""One probe of a target on request (``/probe``): it waits for a slot of the same
max_concurrent_probes limit the schedule uses, and a module's OAuth2 tokens are kept between
requests."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from exporter.config import AuthConfig, RelayConfig
from exporter.relay.probe import probe_relay
from exporter.relay.result import RelayResult, crashed_result
from exporter.relay.scheduler import ProbeFn
from exporter.smtp import TokenSource, token_source_for
from exporter.tasks import Limiter

__all__ = ["TargetProber"]

log = logging.getLogger(__name__)

# The shortest time a probe is given once it holds a slot, however little the budget left.
_MIN_TIMEOUT = 0.05


class TargetProber:
    """Runs probes that a request asks for, on the event loop, under ``limiter``."""

    def __init__(self, limiter: Limiter, *, probe: ProbeFn = probe_relay) -> None:
        self._limiter = limiter
        self._probe = probe
        # Per module name: the auth it was made for, and its token source (XOAUTH2 only).
        self._tokens: dict[str, tuple[AuthConfig, TokenSource]] = {}

    async def probe(
        self,
        relay: RelayConfig,
        *,
        budget: float,
        nameservers: tuple[tuple[str, int], ...] = (),
        dns_timeout: float | None = None,
    ) -> RelayResult | None:
        """The probe of ``relay``, ended within ``budget`` seconds from now, the wait for a
        slot included; None when no slot came free in that time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        started = False
        try:
            async with asyncio.timeout(budget) as waiting:
                async with self._limiter:
                    waiting.reschedule(None)  # the slot is held: the probe's timeout rules now
                    started = True
                    timeout = max(_MIN_TIMEOUT, deadline - loop.time())
                    return await self._run(replace(relay, timeout=timeout), nameservers,
                                           dns_timeout)
        except TimeoutError:
            if started:
                raise
            return None

    async def _run(self, relay: RelayConfig, nameservers: tuple[tuple[str, int], ...],
                   dns_timeout: float | None) -> RelayResult:
        started = time.time()
        try:
            return await self._probe(relay, nameservers=nameservers, dns_timeout=dns_timeout,
                                     token_source=self._token_source(relay))
        except Exception as exc:  # a bug in the exporter, not a failure of the target
            log.exception("probe crashed", extra={"module": relay.name, "host": relay.host})
            return crashed_result(relay.name, started, exc)

    def _token_source(self, relay: RelayConfig) -> TokenSource | None:
        """The module's token source, made once per module and auth block (a reload that
        changes the auth makes a new one)."""
        cached = self._tokens.get(relay.name)
        if cached is not None and cached[0] == relay.auth:
            return cached[1]
        source = token_source_for(relay.auth)
        if source is None:
            self._tokens.pop(relay.name, None)
        else:
            self._tokens[relay.name] = (relay.auth, source)
        return source
