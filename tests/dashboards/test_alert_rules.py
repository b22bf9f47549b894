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
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: bad severity"
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
