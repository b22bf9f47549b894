"""Checks for the Grafana dashboards in dashboards/: structure, data sources, variables, PromQL."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import executable

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))
PROVIDER = DASHBOARDS / "provisioning" / "dashboards" / "smtp-canary-exporter.yaml"
README = ROOT / "README.md"

# A data source reference may only point at the import input or the datasource variable.
DATASOURCE_UID = re.compile(r"^(\$\{DS_PROMETHEUS\}|\$\{datasource\}|\$datasource)$")
# Names that may appear in an expression although the Metrics table does not list them.
EXTRA_METRICS = {"up", "time"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}
STRING = r'"(?:[^"\\]|\\.)*"'
# An exporter metric, or a series alerts.yaml records from them (level:smtp_...:operation).
SMTP_SELECTOR = re.compile(r"(?<![\w:])((?:\w+:)?smtp_\w+(?::\w+)?)(?![\w:])\s*(\{(?:[^}\"]|"
                           + STRING + r")*\})?")
RULES = DASHBOARDS / "alerts.yaml"
FILTERS = ('job=~"$job"', 'instance=~"$instance"')


def _load(path: Path) -> dict[str, Any]:
    """Return the parsed JSON of one dashboard file."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every panel, including panels nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    """Return the PromQL expression of every panel target."""
    return [
        target["expr"]
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def _variable_query(variable: dict[str, Any]) -> str:
    """Return the query text of a templating variable (a string or a query object)."""
    query = variable.get("query", "")
    if isinstance(query, dict):
        return str(query.get("query", ""))
    return str(query)


def _variable_selectors(dashboard: dict[str, Any]) -> list[str]:
    """Return the series selector of every label_values(selector, label) variable query."""
    selectors = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"\s*label_values\((.+),\s*\w+\s*\)\s*", _variable_query(variable))
        if match:
            selectors.append(match.group(1))
    return selectors


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    """Yield every (key, value) pair of a JSON document, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _readme_metrics() -> dict[str, str]:
    """Return {metric name: type} from the Metrics table of the project README."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Metrics\s*$(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Metrics' section"
    rows = re.findall(r"^\|\s*`([a-zA-Z_:][\w:]*)`\s*\|\s*(\w+)\s*\|", match.group(1),
                      re.MULTILINE)
    assert rows, "no metrics found in README's Metrics table"
    return dict(rows)


def _recorded() -> set[str]:
    """Return the names of the series the recording rules in alerts.yaml record."""
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return {rule["record"] for group in doc["groups"] for rule in group["rules"]
            if "record" in rule}


def _allowed_metrics() -> set[str]:
    """Return every series name a query may use: gauges, counters and histogram series of
    the README's Metrics table, and the series alerts.yaml records."""
    allowed = set(EXTRA_METRICS) | _recorded()
    for name, kind in _readme_metrics().items():
        if kind == "histogram":
            allowed.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            allowed.add(name)
    return allowed


def _metric_names(expr: str) -> set[str]:
    """Return the metric names an expression selects (not functions, labels or keywords)."""
    text = re.sub(STRING, '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = re.findall(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return {name for name in names if name.lower() not in PROMQL_KEYWORDS}


def _for_promtool(expr: str) -> str:
    """Return the expression with Grafana's variables replaced by values PromQL accepts."""
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", ".*", expr)


def _ids(path: Path) -> str:
    """Name a parametrized case after the dashboard file."""
    return path.name


@pytest.fixture(params=DASHBOARD_FILES, ids=_ids)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Return one parsed dashboard."""
    path: Path = request.param
    return _load(path)


def test_dashboards_exist() -> None:
    """Both dashboards, overview.json and relay.json, are present."""
    assert {path.name for path in DASHBOARD_FILES} >= {"overview.json", "relay.json"}


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=_ids)
def test_dashboard_parses(path: Path) -> None:
    """Each dashboard is a JSON object with uid, title, tags, panels and a schema version."""
    data = _load(path)
    assert isinstance(data, dict)
    assert data.get("uid") and data.get("title"), f"{path.name}: uid and title must be set"
    assert data.get("tags") == ["smtp", "mail"]
    assert isinstance(data.get("schemaVersion"), int) and data["schemaVersion"] >= 36
    assert data.get("id") is None, f"{path.name}: an exported dashboard carries no id"
    assert list(_panels(data)), f"{path.name}: no panels"


def test_dashboard_uids_unique() -> None:
    """No two dashboards share a uid or a title."""
    data = [_load(path) for path in DASHBOARD_FILES]
    uids = [d["uid"] for d in data]
    titles = [d["title"] for d in data]
    assert len(uids) == len(set(uids)), uids
    assert len(titles) == len(set(titles)), titles


def test_panel_ids_unique(dashboard: dict[str, Any]) -> None:
    """Every panel id, rows included, is unique within its dashboard."""
    found = [panel.get("id") for panel in _panels(dashboard)]
    assert all(isinstance(i, int) for i in found), f"panel without an integer id: {found}"
    ids = [i for i in found if isinstance(i, int)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"duplicate panel ids: {duplicates}"


def test_datasource_input(dashboard: dict[str, Any]) -> None:
    """The dashboard declares the DS_PROMETHEUS import input and a datasource variable."""
    inputs = {item["name"]: item for item in dashboard.get("__inputs", [])}
    assert "DS_PROMETHEUS" in inputs
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_no_hardcoded_datasource_uid(dashboard: dict[str, Any]) -> None:
    """Every data source reference is ${DS_PROMETHEUS} or the datasource variable."""
    for key, value in _walk(dashboard):
        if key != "datasource" or value is None:
            continue
        uid = value.get("uid") if isinstance(value, dict) else value
        assert isinstance(uid, str), f"data source without a uid: {value!r}"
        assert DATASOURCE_UID.match(uid), f"hard-coded data source {value!r}"
        if isinstance(value, dict):
            assert value.get("type") == "prometheus", f"data source of another type: {value!r}"
    for panel in _panels(dashboard):
        if panel.get("type") == "row":
            continue
        assert panel.get("datasource"), f"panel {panel['title']!r} has no data source"
        for target in panel.get("targets", []):
            assert target.get("datasource"), f"a target of {panel['title']!r} has no data source"


def test_job_and_instance_variables(dashboard: dict[str, Any]) -> None:
    """job, location and instance are multi-value query variables with All, chained on
    build_info, so replicas in several locations can be compared or picked."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    expected = {
        "job": "label_values(smtp_exporter_build_info, job)",
        "location": 'label_values(smtp_exporter_build_info{job=~"$job"}, location)',
        "instance": 'label_values(smtp_exporter_build_info{job=~"$job", '
                    'location=~"$location"}, instance)',
    }
    for name, query in expected.items():
        variable = variables[name]
        assert variable["type"] == "query"
        assert _variable_query(variable) == query
        assert variable.get("multi") is True and variable.get("includeAll") is True


def test_every_variable_used(dashboard: dict[str, Any]) -> None:
    """Every templating variable is referenced in a query, a title or another variable."""
    variables = dashboard["templating"]["list"]
    for variable in variables:
        name = variable["name"]
        pattern = re.compile(r"\$\{" + name + r"(:\w+)?\}|\$" + name + r"\b|\[\[" + name + r"\]\]")
        others = [v for v in variables if v is not variable]
        rest = {key: value for key, value in dashboard.items() if key != "templating"}
        text = json.dumps(rest) + json.dumps(others)
        assert pattern.search(text), f"variable ${name} is defined but never used"


def test_relay_dashboard_variable() -> None:
    """relay.json selects one relay from smtp_probe_success of the chosen jobs and instances."""
    variables = {v["name"]: v for v in _load(DASHBOARDS / "relay.json")["templating"]["list"]}
    assert _variable_query(variables["relay"]) == (
        'label_values(smtp_probe_success{job=~"$job", location=~"$location", '
        'instance=~"$instance"}, relay)'
    )


def test_metric_names_in_readme(dashboard: dict[str, Any]) -> None:
    """Every metric an expression or variable query uses is listed in README's Metrics table
    or recorded by alerts.yaml."""
    allowed = _allowed_metrics()
    queries = _exprs(dashboard) + _variable_selectors(dashboard)
    assert queries
    for query in queries:
        unknown = _metric_names(query) - allowed
        assert not unknown, f"{query!r} uses metrics not in README's Metrics table: {unknown}"


def test_metric_name_parser() -> None:
    """The metric name parser skips functions, labels, ranges, strings and keywords."""
    expr = (
        'histogram_quantile(0.95, sum by (relay, le) (rate(smtp_x_bucket{job=~"$job", '
        'relay="a b"}[$__rate_interval]))) > 1e3 and on (relay) up == 0 or time() - smtp_y'
    )
    assert _metric_names(expr) == {"smtp_x_bucket", "up", "smtp_y"}


def test_selectors_filter_job_and_instance(dashboard: dict[str, Any]) -> None:
    """Every smtp_ selector in an expression filters on the job and instance variables."""
    for expr in _exprs(dashboard):
        selectors = SMTP_SELECTOR.findall(expr)
        assert selectors, f"no smtp_ metric in {expr!r}"
        for name, matchers in selectors:
            for wanted in FILTERS:
                assert wanted in matchers, f"{name} in {expr!r} lacks {wanted}"


def test_relay_dashboard_filters_relay() -> None:
    """Every expression of relay.json is limited to the selected relay."""
    for expr in _exprs(_load(DASHBOARDS / "relay.json")):
        for name, matchers in SMTP_SELECTOR.findall(expr):
            assert 'relay="$relay"' in matchers, f"{name} in {expr!r} is not limited to $relay"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=_ids)
def test_promtool_parses_exprs(path: Path, tmp_path: Path) -> None:
    """promtool accepts every expression and variable selector as a recording rule."""
    promtool = executable("promtool", "apt-get install prometheus")
    data = _load(path)
    exprs = _exprs(data) + _variable_selectors(data)
    rules = [
        {"record": f"dashboard:check:{n}", "expr": _for_promtool(expr)}
        for n, expr in enumerate(exprs)
    ]
    rules_file = tmp_path / "dashboard_rules.yaml"
    rules_file.write_text(
        yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}), encoding="utf-8"
    )
    result = subprocess.run(
        [promtool, "check", "rules", str(rules_file)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    numbered = "\n".join(f"{n}: {rule['expr']}" for n, rule in enumerate(rules))
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + numbered
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_for_promtool_substitution() -> None:
    """Grafana variables become a range and a regex PromQL can parse."""
    expr = 'rate(smtp_x{job=~"$job", relay="${relay}"}[$__rate_interval])'
    assert _for_promtool(expr) == 'rate(smtp_x{job=~".*", relay=".*"}[5m])'


def test_provisioning_provider() -> None:
    """The provisioning file declares a file provider with a path for the JSON files."""
    data = yaml.safe_load(PROVIDER.read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1
    providers = data["providers"]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    assert provider["name"] and provider["options"]["path"].startswith("/")


def test_readme_documents_dashboards() -> None:
    """dashboards/README.md has a Dashboards section naming both files and the provisioning."""
    text = (DASHBOARDS / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Dashboards\s*$(.*)", text, re.MULTILINE | re.DOTALL)
    assert match, "dashboards/README.md has no '## Dashboards' section"
    section = match.group(1)
    for needle in ("overview.json", "relay.json", "smtp-canary-exporter.yaml", "DS_PROMETHEUS"):
        assert needle in section, f"the Dashboards section does not mention {needle}"


def test_error_budget_row() -> None:
    """overview.json has an "Error budgets (30 d)" row with the budget remaining and the burn
    rate, per relay x mailbox for canaries and per relay for probes, read from the recording
    rules; the burn-rate panels draw the alerts' 14.4x and 6x lines."""
    panels = list(_panels(_load(DASHBOARDS / "overview.json")))
    titles = [panel["title"] for panel in panels]
    row = titles.index("Error budgets (30 d)")
    assert panels[row]["type"] == "row"
    below = {panel["title"]: panel for panel in panels[row + 1:]}
    for title, level, sli in (("Canary", "relay_mailbox", "canary"), ("Relay", "relay", "probe")):
        budget = below[f"{title} error budget remaining (30 d)"]
        (expr,) = [target["expr"] for target in budget["targets"]]
        assert f"1 - {level}:smtp_{sli}_slo_errors:ratio_rate30d{{" in expr
        assert f"/ (1 - {level}:smtp_{sli}_slo_objective:ratio{{" in expr
        assert budget["fieldConfig"]["defaults"]["unit"] == "percentunit"
        burn = below[f"{title} burn rate"]
        windows = [re.findall(r"ratio_rate(\w+)", target["expr"]) for target in burn["targets"]]
        assert windows == [["1h"], ["6h"]]
        steps = burn["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["value"] for step in steps] == [None, 6, 14.4]
        legends = [target["legendFormat"] for target in budget["targets"] + burn["targets"]]
        wanted = ("{{relay}}", "{{mailbox}}") if sli == "canary" else ("{{relay}}",)
        assert all(label in legend for legend in legends for label in wanted), legends
