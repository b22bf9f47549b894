"""Start-up of many relay hosts' DNS checks: spread by a rate, not all in the first seconds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from exporter.config import Config, parse_config
from exporter.dns import manager as dns_manager
from exporter.dns.manager import HOST_CHECK_RATE, DNSManager
from exporter.dns.store import DNSStore
from exporter.tasks import FIRST_SPREAD


def _config(relays: int) -> Config:
    lines = ["domains: [{name: sender.example.com}]", "relays:"]
    lines += [f"  - {{name: r{i}, host: mx{i}.example.net, port: 587, tls: starttls}}"
              for i in range(relays)]
    return parse_config("\n".join(lines) + "\n", environ={})


async def _spreads(monkeypatch: pytest.MonkeyPatch, relays: int, first_spread: float | None
                   ) -> dict[str, set[float]]:
    """The first_spread each kind of DNS loop was started with."""
    seen: dict[str, set[float]] = {"domain": set(), "relay": set()}

    async def run_every(interval: float, run: Any, *, first_spread: float, **_: Any) -> None:
        kind = "relay" if "_relay_loop" in run.__qualname__ else "domain"
        seen[kind].add(first_spread)

    monkeypatch.setattr(dns_manager, "run_every", run_every)
    manager = DNSManager(DNSStore())
    if first_spread is not None:
        manager.first_spread = first_spread
    manager.apply(_config(relays))
    await asyncio.sleep(0)
    await manager.stop()
    return seen


async def test_many_relay_hosts_spread_their_first_checks_by_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2,000 relay hosts start their checks over 2,000 / HOST_CHECK_RATE seconds (40 s,
    at most the interval, as run_every bounds it); the sending domains keep the usual
    spread."""
    seen = await _spreads(monkeypatch, 2_000, None)
    assert seen == {"domain": {FIRST_SPREAD}, "relay": {2_000 / HOST_CHECK_RATE}}


@pytest.mark.parametrize("first_spread", [None, 0.0, 1e9])
async def test_a_few_relay_hosts_keep_the_set_spread(
    monkeypatch: pytest.MonkeyPatch, first_spread: float | None,
) -> None:
    """Up to FIRST_SPREAD x HOST_CHECK_RATE hosts, the manager's first_spread holds as set,
    a test's 0 (check at once) and 1e9 (never) included."""
    seen = await _spreads(monkeypatch, 20, first_spread)
    expected = FIRST_SPREAD if first_spread is None else first_spread
    assert seen == {"domain": {expected}, "relay": {expected}}
