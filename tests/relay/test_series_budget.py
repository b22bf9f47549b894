"""What a relay costs in series on /metrics: 30 by default (README, "What a relay costs in
series"), and exactly what each opt-in adds."""

from __future__ import annotations

from typing import Any

import yaml
from prometheus_client.registry import CollectorRegistry

from exporter.app import relay_infos
from exporter.config import parse_config
from exporter.dns import DNSStore, RelayDNSReport
from exporter.dns.result import CheckName, CheckStatus, DNSCheck
from exporter.metrics import ExporterCollector
from exporter.model import Phase, Reason, TLSInfo, TLSMode
from exporter.relay import RelayResult, ResultStore
from tests.helpers import samples

# A STARTTLS + AUTH PLAIN probe of a host name reaches these phases.
REACHED = (Phase.RESOLVE, Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.TLS, Phase.AUTH,
           Phase.QUIT)
ADDRESS = "192.0.2.10"
ZONE = "zen.example.org"
DEFAULT = {"host": "mail.example.com", "port": 587,
           "auth": {"mechanism": "plain", "username": "u", "password_env": "PW"}}


def scrape(relays: list[dict[str, Any]], *, top: dict[str, Any] | None = None,
           failures: dict[str, tuple[Reason, ...]] | None = None) -> str:
    """/metrics (text) after one healthy probe and one relay DNS check of every relay (or
    the listed failures first)."""
    config = parse_config(yaml.safe_dump({"relays": relays, **(top or {})}),
                          environ={"PW": "secret"})
    store, dns = ResultStore(), DNSStore()
    store.configure(relay_infos(config), warnings=(), source="test")
    dns.configure([], [(r.name, r.host) for r in config.relays])
    for relay in config.relays:
        for at, reason in enumerate((failures or {}).get(relay.name, ())):
            store.record(RelayResult(relay=relay.name, success=False, started_at=1e9 + at,
                                     duration=5.0, phases={Phase.RESOLVE: 0.001},
                                     reason=reason, hint="h", failed_phase=Phase.CONNECT))
        plain = relay.tls is TLSMode.NONE
        no_auth = relay.auth.mechanism.value == "none"
        reached = [p for p in REACHED
                   if not (plain and p is Phase.TLS) and not (no_auth and p is Phase.AUTH)]
        if relay.rcpt_check:
            reached += [Phase.MAIL, Phase.RCPT]
        store.record(RelayResult(
            relay=relay.name, success=True, started_at=2e9, duration=0.4,
            phases=dict.fromkeys(reached, 0.05),
            tls=None if plain else TLSInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", True, 2e9)))
        addresses = relay.egress_addresses or (ADDRESS,)
        zones = config.blocklists or (ZONE,)
        dns.record(RelayDNSReport(
            relay=relay.name, host=relay.host, checked_at=0.0, addresses=addresses,
            checks=tuple(DNSCheck(relay.host, check, CheckStatus.OK, "ok")
                         for check in (CheckName.ADDRESS, CheckName.PTR, CheckName.DNSBL)),
            ptr_matches=dict.fromkeys(addresses, True),
            listed={(a, z): False for a in addresses for z in zones}))
    collector = ExporterCollector(store.snapshot, dns=dns.snapshot)
    registry = CollectorRegistry()
    registry.register(collector)
    chunks, _ = collector.render(registry, "")
    return b"".join(chunks).decode()


def series_of(text: str, relay: str) -> list[str]:
    """The series whose labels include relay=<relay>."""
    return sorted(name for name, labels in samples(text) if ("relay", relay) in labels)


def test_a_default_relay_costs_at_most_30_series() -> None:
    """A healthy STARTTLS + AUTH relay with relay DNS checks (address, ptr, one blocklist)
    and no canary has 30 series: its last-probe gauges, 7 phase gauges, a 7-series duration
    histogram, 3 TLS series and 8 DNS series; no failure counter while it never failed."""
    found = series_of(scrape([{"name": "r", **DEFAULT}]), "r")
    assert len(found) == 30, found
    assert found.count("smtp_probe_phase_duration_seconds") == len(REACHED)
    assert sum(n.startswith("smtp_probe_total_duration_seconds") for n in found) == 7
    assert sum(n.startswith("smtp_dns") for n in found) == 8
    assert not any(n.startswith("smtp_probe_phase_latency") for n in found)
    assert "smtp_probe_failures_total" not in found


def test_phase_histograms_add_buckets_plus_three_per_phase() -> None:
    """metrics.phase_histograms adds (buckets + 3) series per listed phase: 18 with the
    default 15 bounds, 6 with three; a relay's own metrics: overrides the top level's."""
    relays = [{"name": "global", **DEFAULT},
              {"name": "own", **DEFAULT,
               "metrics": {"phase_histograms": ["connect"], "buckets": [0.01, 0.1, 1]}},
              {"name": "off", **DEFAULT, "metrics": {"phase_histograms": []}}]
    text = scrape(relays, top={"metrics": {"phase_histograms": ["connect", "tls", "auth"]}})
    assert len(series_of(text, "global")) == 30 + 3 * 18
    assert len(series_of(text, "own")) == 30 + 1 * 6
    assert len(series_of(text, "off")) == 30
    s = samples(text)
    key = ("smtp_probe_phase_latency_seconds_bucket",
           frozenset({("relay", "own"), ("phase", "connect"), ("le", "0.1")}))
    assert s[key] == 1  # the probe's 0.05 s connect


def test_failure_reasons_add_a_series_each_once_seen() -> None:
    """A relay that failed with two reasons and recovered has one counter per reason (no
    series for reasons that never happened); a failing relay adds its failure info."""
    text = scrape([{"name": "r", **DEFAULT}],
                  failures={"r": (Reason.CONNECT_TIMEOUT, Reason.CONNECT_TIMEOUT,
                                  Reason.AUTH_FAILED)})
    found = series_of(text, "r")
    assert len(found) == 32
    s = samples(text)
    assert s[("smtp_probe_failures_total",
              frozenset({("relay", "r"), ("reason", "connect_timeout")}))] == 2
    assert s[("smtp_probe_failures_total",
              frozenset({("relay", "r"), ("reason", "auth_failed")}))] == 1


def test_oauth2_adds_two_series() -> None:
    """XOAUTH2 with oauth2: adds the token refresh failure counter and, once a token is
    cached, its expiry."""
    relay = {"name": "r", "host": "smtp.example.com", "port": 587,
             "auth": {"mechanism": "xoauth2", "username": "u",
                      "oauth2": {"token_url": "https://login.example.com/token",
                                 "client_id": "c", "refresh_token_env": "PW"}}}
    found = series_of(scrape([relay]), "r")
    assert len(found) == 31 and "smtp_oauth2_token_refresh_failures_total" in found


def test_each_relay_option_adds_what_the_readme_says() -> None:
    """rcpt_check adds the mail and rcpt phases (2); a second egress address adds its ptr and
    blocklist series (2); a second blocklist adds one per address (1); tls: none drops the
    tls phase and the 3 TLS series (4 fewer), and no AUTH its phase (1 fewer)."""
    relays = [{"name": "rcpt", **DEFAULT, "rcpt_check": "postmaster@example.com"},
              {"name": "two", **DEFAULT, "egress_addresses": ["192.0.2.10", "192.0.2.11"]},
              {"name": "plain", "host": "mail.example.com", "port": 25, "tls": "none"}]
    text = scrape(relays)
    assert len(series_of(text, "rcpt")) == 30 + 2
    assert len(series_of(text, "two")) == 30 + 2
    assert len(series_of(text, "plain")) == 30 - 4 - 1
    two_lists = scrape([{"name": "r", **DEFAULT}],
                       top={"blocklists": [ZONE, "bl.example.net"]})
    assert len(series_of(two_lists, "r")) == 30 + 1
