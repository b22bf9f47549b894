"""Generate the Grafana alerting provisioning file from dashboards/alerts.yaml.

Run from anywhere:  python dashboards/provisioning/alerting/generate.py
tests/dashboards/test_grafana_alerting.py fails when the committed file differs from this output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent.parent / "alerts.yaml"
OUTPUT = HERE / "smtp-canary-exporter.yaml"
DATASOURCE_UID = "prometheus"
EXPR_UID = "__expr__"

HEADER = """\
# Grafana-managed alert rules for smtp-canary-exporter (Grafana 10+ file provisioning).
# GENERATED from dashboards/alerts.yaml by generate.py in this folder: do not edit by hand.
# Copy to /etc/grafana/provisioning/alerting/. The queries use the Prometheus data source
# with uid "prometheus" (see "Grafana-managed alerts" in dashboards/README.md).
"""

# Prometheus' `query` template function does not exist in Grafana: the auth-result alerts name
# the verdict through it, so their Grafana description says "other than pass" instead.
_VERDICT_QUERY = re.compile(r"verdict \{\{ range query .*?\{\{ end \}\}, not pass")
# `{{ $value }}` (with or without a pipeline); in Grafana it is the value of query D.
_VALUE = re.compile(r"\$value\b(?!s)")


def uid(alert: str) -> str:
    """Return the stable Grafana uid of an alert: its name in kebab case (SMTPDNSCheckError
    becomes smtp-dns-check-error)."""
    name = alert.removeprefix("SMTP").replace("OAuth2", "Oauth2")
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name)
    return f"smtp-{words}".lower()


def recording_rules(doc: dict[str, Any]) -> dict[str, str]:
    """Return {recorded name: expression} of every recording rule in the rules document."""
    return {str(rule["record"]): str(rule["expr"]).strip()
            for group in doc["groups"] for rule in group["rules"] if "record" in rule}


def inline(expr: str, records: dict[str, str]) -> str:
    """Return expr with every recorded series it reads replaced by the recording rule's own
    expression in parentheses, so Grafana needs no recording rules in Prometheus."""
    expr = expr.strip()
    for name, recorded in records.items():
        pattern = rf"(?<![\w:]){re.escape(name)}(?![\w:])"
        expr = re.sub(pattern, "(" + recorded.replace("\\", "\\\\") + ")", expr)
    return expr


def condition_expr(expr: str) -> str:
    """Return expr rewritten to yield 1 for every series the Prometheus alert fires for."""
    expr = expr.strip()
    return f"(\n{expr}\n) * 0 + 1" if "\n" in expr else f"({expr}) * 0 + 1"


def annotation(text: str) -> str:
    """Return a Prometheus annotation template rewritten for Grafana."""
    text = _VERDICT_QUERY.sub("verdict other than pass", text)
    return _VALUE.sub("$values.D.Value", text)


def _query(ref: str, expr: str) -> dict[str, Any]:
    """Return an instant Prometheus query of the last 10 minutes."""
    return {
        "refId": ref,
        "relativeTimeRange": {"from": 600, "to": 0},
        "datasourceUid": DATASOURCE_UID,
        "model": {"expr": expr, "refId": ref, "instant": True},
    }


def grafana_rule(alert: dict[str, Any], records: dict[str, str] | None = None) -> dict[str, Any]:
    """Return the Grafana-managed rule equivalent to one Prometheus alerting rule; recorded
    series in its expression are written out (see inline)."""
    annotations = {key: annotation(str(value)) for key, value in alert["annotations"].items()}
    expr = inline(alert["expr"], records or {})
    data = [
        _query("A", condition_expr(expr)),
        {
            "refId": "B",
            "datasourceUid": EXPR_UID,
            "model": {"type": "reduce", "expression": "A", "reducer": "last", "refId": "B"},
        },
        {
            "refId": "C",
            "datasourceUid": EXPR_UID,
            "model": {
                "type": "threshold",
                "expression": "B",
                "conditions": [{"evaluator": {"type": "gt", "params": [0]}}],
                "refId": "C",
            },
        },
    ]
    if any(_VALUE.search(str(value)) for value in alert["annotations"].values()):
        # The condition's value is always 1; D carries the value Prometheus' $value shows.
        data.append(_query("D", expr))
    return {
        "uid": uid(alert["alert"]),
        "title": alert["alert"],
        "condition": "C",
        "data": data,
        "noDataState": "OK",
        "execErrState": "Error",
        "for": alert.get("for", "0s"),
        "annotations": annotations,
        "labels": {"severity": alert["labels"]["severity"]},
    }


def build(rules_path: Path = RULES) -> dict[str, Any]:
    """Return the provisioning document for every alert in alerts.yaml."""
    doc = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    alerts = [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": "smtp-canary-exporter",
                "folder": "SMTP canary",
                "interval": "1m",
                "rules": [grafana_rule(alert, recording_rules(doc)) for alert in alerts],
            }
        ],
    }


class _Dumper(yaml.SafeDumper):
    """A YAML dumper that writes multi-line strings as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Represent a string, as a literal block when it spans lines."""
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(rules_path: Path = RULES) -> str:
    """Return the text of the provisioning file."""
    body = yaml.dump(build(rules_path), Dumper=_Dumper, sort_keys=False, width=1000)
    return HEADER + body


def main() -> int:
    """Write the provisioning file next to this script."""
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
