"""Checks for the Grafana-managed alerting provisioning file generated from alerts.yaml."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.tools import executable

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
RULES = DASHBOARDS / "alerts.yaml"
ALERTING = DASHBOARDS / "provisioning" / "alerting"
PROVISIONING = ALERTING / "smtp-canary-exporter.yaml"
GENERATOR = ALERTING / "generate.py"
README = DASHBOARDS / "README.md"
UID = re.compile(r"[a-zA-Z0-9\-_]{1,40}")


def _alerts() -> list[dict[str, Any]]:
    """Return every alerting rule in alerts.yaml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _records() -> dict[str, str]:
    """Return {recorded name: expression} of every recording rule in alerts.yaml."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["record"]: rule["expr"].strip()
            for group in doc["groups"] for rule in group["rules"] if "record" in rule}


def _written_out(expr: str) -> str:
    """Return an alert expression with each recorded series replaced by its expression."""
    for name, recorded in _records().items():
        pattern = rf"(?<![\w:]){re.escape(name)}(?![\w:])"
        expr = re.sub(pattern, "(" + recorded.replace("\\", "\\\\") + ")", expr)
    return expr.strip()


def _doc() -> dict[str, Any]:
    """Return the parsed provisioning file."""
    doc: dict[str, Any] = yaml.safe_load(PROVISIONING.read_text(encoding="utf-8"))
    return doc


def _rules() -> list[dict[str, Any]]:
    """Return every Grafana rule in the provisioning file."""
    return [rule for group in _doc()["groups"] for rule in group["rules"]]


def _by_title() -> dict[str, dict[str, Any]]:
    """Return the Grafana rules keyed by title."""
    return {rule["title"]: rule for rule in _rules()}


def _queries(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return a Grafana rule's queries keyed by refId."""
    return {query["refId"]: query for query in rule["data"]}


def _squash(text: str) -> str:
    """Return text without whitespace."""
    return "".join(text.split())


def _generator() -> ModuleType:
    """Import dashboards/provisioning/alerting/generate.py."""
    spec = importlib.util.spec_from_file_location("grafana_alerting_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_group_settings() -> None:
    """The file is apiVersion 1 with one group in org 1, folder "SMTP canary", every minute."""
    doc = _doc()
    assert doc["apiVersion"] == 1
    assert len(doc["groups"]) == 1
    group = doc["groups"][0]
    assert (group["orgId"], group["name"], group["folder"], group["interval"]) == (
        1, "smtp-canary-exporter", "SMTP canary", "1m"
    )


def test_one_rule_per_alert() -> None:
    """Every Prometheus alert has exactly one Grafana rule with its name, and no rule is extra."""
    titles = [rule["title"] for rule in _rules()]
    names = [alert["alert"] for alert in _alerts()]
    assert len(names) == 21
    assert sorted(titles) == sorted(names)
    assert {"SMTPCanarySLOFastBurn", "SMTPCanarySLOSlowBurn", "SMTPRelaySLOFastBurn",
            "SMTPRelaySLOSlowBurn"} <= set(titles)


def test_rules_match_prometheus() -> None:
    """Each Grafana rule keeps the alert's severity, `for` and expression; an expression that
    reads recorded series (the error-budget alerts) has them written out, so the Grafana rule
    works on a Prometheus that does not load alerts.yaml."""
    rules = _by_title()
    records = _records()
    assert records, "alerts.yaml records no series"
    for alert in _alerts():
        rule = rules[alert["alert"]]
        expr = _written_out(alert["expr"])
        for name in records:
            assert name not in _queries(rule)["A"]["model"]["expr"], alert["alert"]
        a_expr = _queries(rule)["A"]["model"]["expr"]
        assert rule["labels"] == {"severity": alert["labels"]["severity"]}, alert["alert"]
        assert rule["for"] == alert.get("for", "0s"), alert["alert"]
        assert expr in a_expr, alert["alert"]
        assert _squash(a_expr) == _squash(f"({expr}) * 0 + 1"), alert["alert"]


def test_uids_unique_and_valid() -> None:
    """Rule uids are unique, at most 40 characters of [a-zA-Z0-9-_]."""
    uids = [rule["uid"] for rule in _rules()]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert UID.fullmatch(uid), uid


def test_queries_and_condition() -> None:
    """A queries data source "prometheus", B reduces A, and condition C fires when B > 0."""
    for rule in _rules():
        queries = _queries(rule)
        assert rule["condition"] == "C", rule["title"]
        assert {"A", "B", "C"} <= set(queries) <= {"A", "B", "C", "D"}, rule["title"]
        for ref in set(queries) & {"A", "D"}:
            query = queries[ref]
            assert query["datasourceUid"] == "prometheus", rule["title"]
            assert query["relativeTimeRange"] == {"from": 600, "to": 0}, rule["title"]
            assert query["model"]["refId"] == ref and query["model"]["instant"] is True
        b, c = queries["B"], queries["C"]
        assert b["datasourceUid"] == c["datasourceUid"] == "__expr__", rule["title"]
        assert b["model"] == {"type": "reduce", "expression": "A", "reducer": "last", "refId": "B"}
        assert c["model"] == {
            "type": "threshold",
            "expression": "B",
            "conditions": [{"evaluator": {"type": "gt", "params": [0]}}],
            "refId": "C",
        }
        assert (rule["noDataState"], rule["execErrState"]) == ("OK", "Error"), rule["title"]


def test_annotations_use_grafana_templates() -> None:
    """Annotations keep the runbook and use $values instead of $value and Prometheus' query."""
    rules = _by_title()
    for alert in _alerts():
        rule = rules[alert["alert"]]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, alert["alert"]
        assert annotations["runbook_url"] == alert["annotations"]["runbook_url"]
        text = " ".join(annotations.values())
        assert not re.search(r"\$value\b(?!s)", text), alert["alert"]
        assert "query" not in text, alert["alert"]
        if "$values.D" in text:  # D is the original expression, whose value $value showed
            assert _queries(rule)["D"]["model"]["expr"] == alert["expr"].strip()


def test_queries_parse_with_promtool(tmp_path: Path) -> None:
    """promtool check rules accepts every A and D query as a recording rule."""
    promtool = executable("promtool", "apt-get install prometheus")
    records = [
        {"record": f"grafana:{rule['uid'].replace('-', '_')}:{ref}", "expr": query["model"]["expr"]}
        for rule in _rules()
        for ref, query in _queries(rule).items()
        if ref in {"A", "D"}
    ]
    path = tmp_path / "grafana-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": records}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_committed_file_matches_generator() -> None:
    """The committed provisioning file equals generate.py's output for the current alerts.yaml."""
    assert PROVISIONING.read_text(encoding="utf-8") == _generator().render(), (
        "run: python dashboards/provisioning/alerting/generate.py"
    )


def test_readme_documents_grafana_alerts() -> None:
    """dashboards/README.md has a Grafana-managed alerts section naming the file and the uid."""
    text = README.read_text(encoding="utf-8")
    assert "## Grafana-managed alerts" in text
    section = text.split("## Grafana-managed alerts", 1)[1]
    assert "provisioning/alerting/smtp-canary-exporter.yaml" in section
    assert "`prometheus`" in section


def test_slo_conditions_fire_as_the_prometheus_alerts_do(tmp_path: Path) -> None:
    """Grafana's conditions for the error-budget alerts, run by promtool on the SLO cases of
    alerts_test.yaml, fire at the same times for the same series as the Prometheus alerts:
    a 50 % loss pages, one lost canary a day does not, a slow 2 % loss opens a ticket."""
    promtool = executable("promtool", "apt-get install prometheus")
    rules = _by_title()
    slo = [alert for alert in _alerts() if "SLO" in alert["alert"]]
    grafana_rules = [
        {"alert": alert["alert"], "expr": _queries(rules[alert["alert"]])["A"]["model"]["expr"],
         "for": rules[alert["alert"]]["for"], "labels": alert["labels"],
         "annotations": alert["annotations"]}
        for alert in slo
    ]
    (tmp_path / "grafana.yaml").write_text(yaml.safe_dump(
        {"groups": [{"name": "grafana", "rules": grafana_rules}]}))
    tests = yaml.safe_load((DASHBOARDS / "alerts_test.yaml").read_text(encoding="utf-8"))
    names = {alert["alert"] for alert in slo}
    cases = [
        {key: value for key, value in case.items() if key != "promql_expr_test"}
        for case in tests["tests"]
        if {check["alertname"] for check in case.get("alert_rule_test", [])} & names
    ]
    assert {check["alertname"] for case in cases for check in case["alert_rule_test"]} == names
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["grafana.yaml"], "evaluation_interval": tests["evaluation_interval"],
         "tests": cases}))
    proc = subprocess.run([promtool, "test", "rules", str(tmp_path / "tests.yaml")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
