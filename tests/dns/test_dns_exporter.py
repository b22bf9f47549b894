"""DNS health through the running exporter: scheduled checks against a loopback DNS server
become metrics, log lines and the status page's DNS section."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from exporter.app import App
from exporter.config import RelayConfig
from exporter.relay.result import RelayResult
from tests.conftest import ENV
from tests.helpers import assert_promtool_accepts, http, value
from tests.servers.dns import DNSServer
from tests.servers.loop import ServerLoop
from tests.servers.zones import SERVFAIL, TIMEOUT, zones


async def no_smtp(relay: RelayConfig, **_: Any) -> RelayResult:
    """The relays here resolve to documentation addresses: they are never connected to."""
    return RelayResult(relay=relay.name, success=True, started_at=time.time(), duration=0.0)


async def test_dns_checks_become_metrics(tmp_path: Path, server_loop: ServerLoop) -> None:
    """Good and broken domains and relay hosts read as the right ok, warning and error
    series, with SPF lookups, DKIM bits, DMARC policy, FCrDNS and blocklist listings."""
    server = DNSServer(server_loop, zones(), set(SERVFAIL), timeout=set(TIMEOUT))
    doc = {
        "dns": {"nameservers": [f"127.0.0.1:{server.port}"], "timeout": "1s",
                "interval": "1h"},
        "domains": [{"name": "good.test", "dkim_selectors": ["s2048", "ed"]},
                    {"name": "pnone.test"},
                    {"name": "keys.test", "dkim_selectors": ["s512"]}],
        "blocklists": ["bl.test", "block.test"],
        "relays": [{"name": n, "host": h, "port": 587, "tls": "starttls", "interval": "1h"}
                   for n, h in (("ok", "relay-ok.test"), ("listed", "relay-listed.test"),
                                ("mismatch", "relay-mismatch.test"))]
        + [{"name": "mismatch-465", "host": "relay-mismatch.test", "port": 465,
            "tls": "implicit", "interval": "1h"}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV, probe=no_smtp)
    app.dns.first_spread = 0
    await app.start()
    try:
        assert app.web is not None
        base = f"http://127.0.0.1:{app.web.port}"

        def complete(text: str) -> bool:
            domains = all(value(text, "smtp_dns_check_info", domain=d, check="mx",
                                status=s, relay="") == 1
                          for d, s in (("good.test", "ok"), ("pnone.test", "error")))
            return domains and all(
                value(text, "smtp_dns_ptr_matches", relay=r, address="192.0.2.11") == 0
                for r in ("mismatch", "mismatch-465"))

        text = ""
        deadline = time.monotonic() + 15
        while not complete(text) or value(text, "smtp_dnsbl_listed", relay="listed",
                                          address="192.0.2.20", zone="bl.test") is None:
            assert time.monotonic() < deadline, "DNS checks did not report in 15 s"
            await asyncio.sleep(0.2)
            text = (await asyncio.to_thread(http, base + "/metrics"))[1]
        for check in ("mx", "spf", "dkim", "dmarc", "mta_sts", "tls_rpt"):
            assert value(text, "smtp_dns_check_status", domain="good.test", check=check,
                         relay="") == 1
        assert value(text, "smtp_dns_spf_lookups", domain="good.test") == 3
        size = "smtp_dns_dkim_key_size_bytes"
        assert value(text, size, domain="good.test", selector="s2048") == 256
        assert value(text, size, domain="good.test", selector="ed") == 32
        assert value(text, "smtp_dns_dmarc_policy_info", domain="good.test", policy="reject",
                     subdomain_policy="reject") == 1
        assert value(text, "smtp_dns_dmarc_pct", domain="good.test") == 100
        assert value(text, "smtp_dns_check_info", domain="pnone.test", check="dmarc",
                     status="warning", relay="") == 1
        assert value(text, "smtp_dns_check_status", domain="pnone.test", check="dmarc",
                     relay="") == 0
        assert value(text, "smtp_dns_check_info", domain="keys.test", check="dkim",
                     status="error", relay="") == 1
        assert value(text, size, domain="keys.test", selector="s512") == 64
        assert value(text, "smtp_dns_ptr_matches", relay="ok", address="192.0.2.10") == 1
        assert value(text, "smtp_dns_ptr_matches", relay="mismatch", address="192.0.2.11") == 0
        # two relays on one host: each names itself, domain= is the host, relay="" a domain
        for relay in ("mismatch", "mismatch-465"):
            assert value(text, "smtp_dns_check_info", domain="relay-mismatch.test",
                         check="ptr", status="error", relay=relay) == 1
            assert value(text, "smtp_dns_check_status", domain="relay-mismatch.test",
                         check="ptr", relay=relay) == 0
        assert value(text, "smtp_dns_check_status", domain="good.test", check="mx",
                     relay="") == 1
        assert value(text, "smtp_dnsbl_listed", relay="listed", address="192.0.2.20",
                     zone="bl.test") == 1
        # block.test refuses the query (127.255.255.254): never a listing, but a warning
        assert value(text, "smtp_dnsbl_listed", relay="ok", address="192.0.2.10",
                     zone="block.test") == 0
        assert value(text, "smtp_dns_check_info", domain="relay-ok.test", check="dnsbl",
                     status="warning", relay="ok") == 1
        assert (value(text, "smtp_dns_check_duration_seconds_count", check="spf") or 0) >= 3
        page = (await asyncio.to_thread(http, base + "/"))[1]
        assert "DMARC p=none only monitors; move to quarantine or reject" in page
        assert "is 512-bit RSA: broken; publish a 2048-bit key" in page
        await asyncio.to_thread(assert_promtool_accepts, text)
    finally:
        await app.stop()


BROKEN = [
    ("good.test", "spf", None, "ok", "one SPF record, 3 of 10 DNS lookups, ends in ~all"),
    ("good.test", "dmarc", None, "ok", "DMARC p=reject, reports to mailto:dmarc@good.test"),
    ("twospf.test", "spf", None, "error", "two v=spf1 records; merge them into one"),
    ("deep.test", "spf", None, "error",
     "SPF needs 11 DNS lookups (limit 10): flatten includes or remove unused ones"),
    ("plusall.test", "spf", None, "error",
     "SPF ends in +all: anyone may send as this domain; use ~all or -all"),
    ("spfsyntax.test", "spf", None, "error",
     "SPF syntax error: bad ip4 network 'ip4:192.0.2.300'; fix the record"),
    ("keys.test", "dkim", "s512", "error",
     "DKIM key for selector s512 is 512-bit RSA: broken; publish a 2048-bit key"),
    ("keys.test", "dkim", "s1024", "warning",
     "DKIM key for selector s1024 is 1024-bit RSA: weak; publish a 2048-bit key"),
    ("keys.test", "dkim", "revoked", "error", "DKIM key for selector revoked is revoked"),
    ("nomx.test", "dmarc", None, "error", "no DMARC record at _dmarc.nomx.test"),
    ("pnone.test", "dmarc", None, "warning",
     "DMARC p=none only monitors; move to quarantine or reject once reports are clean"),
    ("dmarcsyntax.test", "dmarc", None, "error", "DMARC"),
    ("servfail.test", "dmarc", None, "error",
     "SERVFAIL looking up _dmarc.servfail.test; the domain's nameservers are failing"),
    ("slow.test", "dmarc", None, "error", "timeout looking up _dmarc.slow.test"),
    ("nomx.test", "mx", None, "error", "no MX record for nomx.test"),
]


def test_every_finding_reaches_probe_json(tmp_path: Path, server_loop: ServerLoop) -> None:
    """`probe --output json` names each broken record with its status and fix, and the good
    domain reads ok; the resolver timeout bounds the slow domain."""
    import json
    import sys

    records = zones()
    records["relay-local.test"] = [("A", "127.0.0.1")]
    server = DNSServer(server_loop, records, set(SERVFAIL), timeout=set(TIMEOUT))
    selectors = {"keys.test": ["s512", "s1024", "revoked"], "good.test": ["s2048"]}
    doc = {
        "dns": {"nameservers": [f"127.0.0.1:{server.port}"], "timeout": "1s"},
        "domains": [{"name": d, "dkim_selectors": selectors.get(d, [])}
                    for d in dict.fromkeys(row[0] for row in BROKEN)],
        "relays": [{"name": "local", "host": "relay-local.test", "port": 2525,
                    "tls": "none", "timeout": "1s"}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "exporter", "probe", "--config.file",
                          str(path), "--output", "json"], capture_output=True, text=True,
                         timeout=60, check=False, env={**os.environ, **ENV})
    assert time.monotonic() - start < 20
    domains = json.loads(out.stdout)[0]["dns"]["domains"]
    for domain, check, selector, status, message in BROKEN:
        found = [c for c in domains[domain]
                 if c["check"] == check and c["selector"] == selector]
        assert len(found) == 1, (domain, check, selector)
        assert found[0]["status"] == status, (domain, check, found[0])
        assert found[0]["message"].startswith(message), (domain, check, found[0])
