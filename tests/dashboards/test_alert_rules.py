"""Checks for the Prometheus alerting rules in dashboards/: promtool, structure, runbook."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import executable

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "alerts.yaml"
RULE_TESTS = DASHBOARDS / "alerts_test.yaml"
RUNBOOK = DASHBOARDS / "README.md"
RUNBOOK_PREFIX = (
    "https://github.com/smtp-canary-exporter/smtp-canary-exporter/blob/main/dashboards/README.md#"
)
SEVERITIES = {"warning", "critical"}
# The error-budget alerts use the SRE workbook's two: page someone now, or open a ticket.
SLO_SEVERITIES = {"page", "ticket"}
SLO_WINDOWS = ("5m", "30m", "1h", "6h", "3d", "30d")


def _promtool() -> str:
    """Return the promtool path; fail under CI, skip elsewhere, when it is missing."""
    return executable("promtool", "apt-get install prometheus")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with the given arguments from the project root."""
    return subprocess.run(
        [_promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def _alerts() -> list[dict[str, Any]]:
    """Return every alerting rule in alerts.yaml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _slug(heading: str) -> str:
    """Return the anchor GitHub generates for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors() -> set[str]:
    """Return the anchors of every heading in dashboards/README.md."""
    text = RUNBOOK.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE)}


def test_promtool_check_rules() -> None:
    """promtool check rules accepts alerts.yaml."""
    result = _run("check", "rules", "dashboards/alerts.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules() -> None:
    """promtool test rules passes every unit test in alerts_test.yaml."""
    result = _run("test", "rules", "dashboards/alerts_test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_single_group() -> None:
    """alerts.yaml holds exactly one group, smtp-canary-exporter, and some alerts."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert [group["name"] for group in doc["groups"]] == ["smtp-canary-exporter"]
    names = [rule["alert"] for rule in _alerts()]
    assert names, "no alerts found"
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"


@pytest.mark.parametrize("rule", _alerts(), ids=lambda rule: rule["alert"])
def test_alert_metadata(rule: dict[str, Any]) -> None:
    """Each alert has a severity, summary, description and a runbook_url into the README."""
    name = rule["alert"]
    severities = SLO_SEVERITIES if "SLO" in name else SEVERITIES
    assert rule.get("labels", {}).get("severity") in severities, f"{name}: bad severity"
    annotations = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: missing annotation {key}"
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX), f"{name}: runbook_url {url!r} not in dashboards/"
    anchor = url.removeprefix(RUNBOOK_PREFIX)
    assert anchor in _anchors(), f"{name}: no heading for #{anchor} in dashboards/README.md"


def test_every_alert_tested_firing_and_silent() -> None:
    """Every alert has a unit test where it fires and one where it does not."""
    text = RULE_TESTS.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    fires: set[str] = set()
    silent: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    for name in (rule["alert"] for rule in _alerts()):
        assert text.count(f"alertname: {name}\n") >= 2, f"{name}: fewer than two test cases"
        assert name in fires, f"{name}: no test case where it fires"
        assert name in silent, f"{name}: no test case where it does not fire"


def _records() -> dict[str, str]:
    """Return {recorded name: expression} of every recording rule in alerts.yaml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["record"]: rule["expr"] for group in doc["groups"] for rule in group["rules"]
            if "record" in rule}


def test_slo_recording_rules() -> None:
    """The error ratios are recorded for every window the burn-rate alerts and the budget
    panels read, per relay x mailbox for canaries and per relay for probes, named
    level:metric:operation; nothing else is recorded."""
    expected = {f"{level}:smtp_{sli}_slo_errors:ratio_rate{window}"
                for level, sli in (("relay_mailbox", "canary"), ("relay", "probe"))
                for window in SLO_WINDOWS}
    expected |= {"relay_mailbox:smtp_canary_slo_objective:ratio",
                 "relay:smtp_probe_slo_objective:ratio"}
    records = _records()
    assert set(records) == expected
    for name, expr in records.items():
        window = name.partition(":ratio_rate")[2]
        if window:
            assert f"[{window}]" in expr and not re.search(r"\[(?!" + window + r"\])", expr), name


def test_burn_rate_alerts_follow_the_workbook() -> None:
    """The fast burn pages at 14.4 x the budget over 1 h and 5 m; the slow burn opens a
    ticket at 6 x over 6 h and 30 m, or 1 x over 3 d and 6 h; all for a 99 % objective."""
    alerts = {rule["alert"]: rule for rule in _alerts()}
    for name, level, sli in (("SMTPCanary", "relay_mailbox", "canary"),
                             ("SMTPRelay", "relay", "probe")):
        ratio = f"{level}:smtp_{sli}_slo_errors:ratio_rate"
        fast, slow = alerts[f"{name}SLOFastBurn"], alerts[f"{name}SLOSlowBurn"]
        assert (fast["labels"]["severity"], slow["labels"]["severity"]) == ("page", "ticket")
        pairs = re.findall(ratio + r"(\w+) > \(([\d.]+) \* \(1 - 0\.99\)\)", fast["expr"])
        assert pairs == [("1h", "14.4"), ("5m", "14.4")], fast["expr"]
        pairs = re.findall(ratio + r"(\w+) > \(([\d.]+) \* \(1 - 0\.99\)\)", slow["expr"])
        assert pairs == [("6h", "6"), ("30m", "6"), ("3d", "1"), ("6h", "1")], slow["expr"]


def test_rules_file_says_how_to_change_the_objective() -> None:
    """The rules file tells a reader which literals are the objective and the latency, that
    the latency must be a bucket boundary, and which Helm values set them."""
    text = RULES.read_text(encoding="utf-8")
    for needle in ("EDITABLE", "0.99", 'le="60.0"', "bucket boundary",
                   "prometheusRule.slo.objective", "prometheusRule.slo.canaryLatencySeconds"):
        assert needle in text, needle
