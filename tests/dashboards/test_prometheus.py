"""A real Prometheus scrapes the demo: every alert expression and dashboard query parses, and
the dashboards' queries return data."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import http, wait_for
from tests.tools import executable

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
# Metric names in a PromQL expression once label matchers ({...}) are removed: exporter
# metrics, series recorded from them (level:smtp_...:operation), and up. Label names in
# by/on/group_left lists never start with these.
METRIC_NAME = re.compile(r"(?<![\w:])((?:\w+:)?smtp_[a-z0-9_]+(?::\w+)?|up)(?![\w:])")


def _ready(url: str) -> bool:
    try:
        return http(url)[0] == 200
    except OSError:  # not listening yet
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo exporter and a Prometheus scraping it every second; yields the API base."""
    binary = executable("prometheus", "apt-get install prometheus")
    tmp = tmp_path_factory.mktemp("prom")
    demo_log = (tmp / "demo.log").open("w")
    demo = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--web.listen-address", "127.0.0.1:0",
         "--demo.interval", "2s"], stdout=demo_log, stderr=subprocess.STDOUT, cwd=ROOT)
    procs = [demo]
    try:
        found: list[str] = []

        def listening() -> bool:
            m = re.search(r"metrics:\s+http://(\S+)/metrics", (tmp / "demo.log").read_text())
            if m:
                found.append(m.group(1))
            return bool(m) or demo.poll() is not None

        wait_for(listening, timeout=20)
        assert found, (tmp / "demo.log").read_text()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "dashboards" / "alerts.yaml")],
            "scrape_configs": [{"job_name": "smtp-canary-exporter",
                                "static_configs": [{"targets": [found[0]],
                                                    "labels": {"location": LOCATION}}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        prom = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=(tmp / "prometheus.log").open("w"), stderr=subprocess.STDOUT)
        procs.append(prom)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(base + "/-/ready"), timeout=20)
        # Canaries land every 10 s in the demo: wait until both folders have one.
        wait_for(lambda: len(query(base, "smtp_canary_received_total > 0")) >= 2, timeout=60)
        wait_for(lambda: len(query(base, 'smtp_dns_check_info{status="ok"} == 1')) > 0,
                 timeout=30)
        # Relay DNS checks (ptr, dnsbl) start at a random point of their first 10 s and may
        # come after the first canaries: wait for the blocklist series of the demo's two
        # relays that name egress addresses (demo-starttls, demo-implicit).
        wait_for(lambda: len(query(base, "smtp_dnsbl_listed")) >= 2, timeout=45)
        time.sleep(3)  # a few more scrapes, so rates over the window have two points
        yield base
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        demo_log.close()


def query(base: str, expr: str) -> list[dict[str, Any]]:
    status, body, _ = http(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "success", f"{expr!r}: {body}"
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def _alert_exprs() -> list[tuple[str, str]]:
    """(name, expression) of every alerting and recording rule in alerts.yaml."""
    doc = yaml.safe_load((ROOT / "dashboards" / "alerts.yaml").read_text())
    return [(rule.get("alert") or rule["record"], rule["expr"])
            for group in doc["groups"] for rule in group["rules"]]


def _panel_exprs() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]], where: str) -> None:
        for panel in panels:
            walk(panel.get("panels", []), where)
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((f"{where}: {panel.get('title')}", target["expr"]))

    for path in DASHBOARDS:
        walk(json.loads(path.read_text()).get("panels", []), path.name)
    return out


LOCATION = "demo-site"  # the target label the Helm chart's ServiceMonitor adds per location
DEMO_RELAYS = ("demo-starttls", "demo-implicit", "demo-oauth2", "demo-wrong-password",
               "demo-wrong-tls-mode")


def _concrete(expr: str, relay: str) -> str:
    """A dashboard query as Grafana would send it with ``relay`` picked."""
    for name, value in (("$__rate_interval", "1m"), ("$__interval", "15s"),
                        ("$__range", "5m"), ("${__range}", "5m"), ("$relay", relay),
                        ("${relay}", relay), ("$job", ".*"), ("${job}", ".*"),
                        ("$instance", ".*"), ("${instance}", ".*"),
                        ("$location", ".*"), ("${location}", ".*")):
        expr = expr.replace(name, value)
    return expr


@pytest.mark.parametrize(("alert", "expr"), _alert_exprs())
def test_alert_expression_evaluates(prometheus: str, alert: str, expr: str) -> None:
    """Each alert and recording rule expression parses and evaluates on a Prometheus holding
    the demo's data, and every metric it reads (recorded series included) has series there, so
    the alert is fed (not silently empty)."""
    query(prometheus, expr)
    names = set(METRIC_NAME.findall(re.sub(r"\{[^}]*\}", "", expr)))
    assert names, f"{alert}: no metric found in {expr!r}"
    for name in names:
        assert query(prometheus, f'count({{__name__="{name}"}})'), (
            f"{alert}: {name} has no series in the demo")


@pytest.mark.skipif(not DASHBOARDS, reason="no dashboards yet")
@pytest.mark.parametrize(("panel", "expr"), _panel_exprs() or [("none", "up")])
def test_dashboard_query_returns_data(prometheus: str, panel: str, expr: str) -> None:
    """Each dashboard query parses; those the demo can feed return at least one series, for
    at least one of the demo's relays (failure panels have data for the failing one)."""
    relays = DEMO_RELAYS if "relay" in expr and "$" in expr else DEMO_RELAYS[:1]
    results = [query(prometheus, _concrete(expr, relay)) for relay in relays]
    assert any(results), f"{panel}: {expr} returned no series for any demo relay"


def test_relay_down_alert_fires_for_the_misconfigured_demo_relay(prometheus: str) -> None:
    """The demo's deliberately misconfigured relay shows up as a pending or firing
    SMTPRelayDown alert with its reason, and the healthy relays do not."""
    alerts = json.loads(http(prometheus + "/api/v1/alerts")[1])["data"]["alerts"]
    down = {a["labels"]["relay"]: a for a in alerts if a["labels"]["alertname"] == "SMTPRelayDown"}
    assert set(down) == {"demo-wrong-tls-mode"}
    assert down["demo-wrong-tls-mode"]["labels"].get("reason") == "tls_mode_mismatch"


def test_location_variable_picks_a_vantage_point(prometheus: str) -> None:
    """With a location chosen, the dashboards' queries keep that location's series apart
    (one canary latency line per location) and return nothing for another location."""
    expr = next(e for p, e in _panel_exprs() if "Canary delivery latency" in p and "0.95" in e
                and "overview" in p)
    here = query(prometheus, _concrete(expr.replace("$location", LOCATION), "demo-starttls"))
    assert here and all(r["metric"].get("location") == LOCATION for r in here)
    elsewhere = query(prometheus, _concrete(expr.replace("$location", "us-east"),
                                            "demo-starttls"))
    assert elsewhere == []


def test_relay_dns_checks_on_one_host_stay_apart(prometheus: str) -> None:
    """In Prometheus, the demo's relays on host localhost each have their own ptr series
    (demo-starttls passes, demo-implicit fails), while domain checks carry no relay label."""

    def ptr() -> dict[str, str]:
        rows = query(prometheus, 'smtp_dns_check_status{check="ptr", domain="localhost"}')
        return {r["metric"].get("relay", ""): r["value"][1] for r in rows}

    wait_for(lambda: {"demo-starttls", "demo-implicit"} <= set(ptr()), timeout=30)
    found = ptr()
    assert found["demo-starttls"] == "1" and found["demo-implicit"] == "0"
    domain = query(prometheus, 'smtp_dns_check_status{check="mx", domain="demo.localhost"}')
    assert len(domain) == 1 and "relay" not in domain[0]["metric"]
    assert query(prometheus, 'smtp_dns_check_status{check="mx", relay=""}')


def _number(row: dict[str, Any]) -> float:
    return float(row["value"][1])


def test_error_budget_panels_show_numbers(prometheus: str) -> None:
    """On a minute of the demo's data, the 30-day budget and the burn rates are numbers, not
    NaN: the demo relay whose canaries land in spam has spent its canary budget, the one that
    delivers to the inbox has it whole, and the misconfigured relay has spent its probe
    budget while the healthy ones keep theirs."""
    panels = dict(_panel_exprs())
    budget = {p.split(": ", 1)[1]: e for p, e in panels.items()
              if "error budget remaining" in p}

    def canary_budget() -> dict[str, float]:
        return {r["metric"]["relay"]: _number(r) for r in query(
            prometheus, _concrete(budget["Canary error budget remaining (30 d)"], ""))}

    # A pair's ratio is NaN (no data) until a canary lands between two scrapes: the demo
    # sends one every 10 s.
    wait_for(lambda: all(v == v for v in canary_budget().values()), timeout=40)
    canary = canary_budget()
    assert canary.keys() == {"demo-starttls", "demo-implicit"}
    assert canary["demo-starttls"] == 1
    assert canary["demo-implicit"] < 0  # every canary in spam: 100x the budget, overspent
    relay = {r["metric"]["relay"]: _number(r) for r in query(
        prometheus, _concrete(budget["Relay error budget remaining (30 d)"], ""))}
    assert set(DEMO_RELAYS) <= relay.keys()
    assert relay["demo-wrong-tls-mode"] < 0
    assert relay["demo-starttls"] == relay["demo-wrong-password"] == 1
    for title in ("Canary burn rate", "Relay burn rate"):
        rows = query(prometheus, _concrete(panels[f"overview.json: {title}"], ""))
        assert rows and all(_number(r) == _number(r) for r in rows), title  # no NaN


def test_burn_rate_alerts_fire_for_the_demos_failures(prometheus: str) -> None:
    """The demo's spam-filed canaries and its misconfigured relay fire the fast burn-rate
    alerts (severity page) for exactly those, and nothing healthy does."""
    def firing() -> dict[str, set[tuple[str, str]]]:
        alerts = json.loads(http(prometheus + "/api/v1/alerts")[1])["data"]["alerts"]
        found: dict[str, set[tuple[str, str]]] = {}
        for a in alerts:
            labels = a["labels"]
            if "SLO" in labels["alertname"] and a["state"] == "firing":
                found.setdefault(labels["alertname"], set()).add(
                    (labels["relay"], labels.get("mailbox", "")))
                assert labels["severity"] in {"page", "ticket"}
        return found

    wait_for(lambda: {"SMTPCanarySLOFastBurn", "SMTPRelaySLOFastBurn"} <= firing().keys(),
             timeout=30)
    found = firing()
    assert found["SMTPCanarySLOFastBurn"] == {("demo-implicit", "demo-mailbox")}
    assert found["SMTPRelaySLOFastBurn"] == {("demo-wrong-tls-mode", "")}
