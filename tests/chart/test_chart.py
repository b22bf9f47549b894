"""The Helm chart, rendered and linted by Helm's own Go code (helm-python-sdk): every object
passes Kubernetes' strict schemas, the ServiceMonitor and PrometheusRule pass the Prometheus
Operator's, the rules pass promtool, and each values file does what a user expects."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import exporter
from exporter.config import parse_config
from exporter.config.loader import _TOP_KEYS
from tests import tools

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "smtp-canary-exporter"
DATA = ROOT / "tests" / "data" / "chart"
ALERTS = ROOT / "dashboards" / "alerts.yaml"
KUBE_VERSION = "1.34.0"
OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")


def _need(module: str) -> Any:
    """Import a tool the chart tests need: skipped without it, except in CI."""
    return tools.module(module)


@pytest.fixture(scope="module")
def helm_cli() -> Any:
    _need("helm_python")
    from tests.chart import helm_cli

    return helm_cli


@pytest.fixture(scope="module")
def render(helm_cli: Any) -> Callable[..., list[dict[str, Any]]]:
    def run(values: dict[str, Any] | None = None, release: str = "mail") -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = helm_cli.render_documents(CHART, values, release=release,
                                                               namespace="monitoring")
        return docs

    return run


def values_file(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return doc


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kinds(docs, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return spec


def rendered_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = next(d for d in kinds(docs, "ConfigMap") if "config.yaml" in d["data"])
    doc: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return doc


# -- validators ---------------------------------------------------------------------------------

def _strict(schema: Any) -> Any:
    """Every object with declared properties refuses others (the operator's CRDs do too, for
    the keys Kubernetes prunes: a typo there would silently vanish)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def operator_schemas() -> dict[str, Any]:
    _need("cloudcoil.models.prometheus_operator")
    jsonschema = _need("jsonschema")
    from cloudcoil.models.prometheus_operator import v1

    return {
        kind: jsonschema.Draft202012Validator(
            _strict(getattr(v1, kind).model_json_schema(by_alias=True)))
        for kind in OPERATOR_KINDS
    }


def validate_all(docs: list[dict[str, Any]], operator_schemas: dict[str, Any]) -> None:
    """Kubernetes objects against the strict schemas of KUBE_VERSION, operator objects
    against the Prometheus Operator's schemas."""
    kv = _need("kubernetes_validate")
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in OPERATOR_KINDS:
            errors = [f"{'/'.join(map(str, e.path))}: {e.message}"
                      for e in operator_schemas[doc["kind"]].iter_errors(doc)]
            assert not errors, f"{name}: {errors}"
        else:
            try:
                kv.validate(doc, KUBE_VERSION, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{name}: {exc}")


def promtool_check_rules(rule: dict[str, Any], tmp_path: Path) -> str:
    promtool = tools.executable("promtool", "apt-get install prometheus")
    path = tmp_path / "rendered-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


# -- lint and schema ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [None, "all-on.yaml", "two-locations.yaml",
                                  "existing-secret.yaml", "sharded.yaml"])
def test_helm_lint_strict_passes(helm_cli: Any, name: str | None) -> None:
    """`helm lint --strict` finds nothing with the default values or any tested values file."""
    assert helm_cli.lint(CHART, values_file(name) if name else None, strict=True) == []


@pytest.mark.parametrize(("name", "message"), [
    ("typo.yaml", "at '/serviceMonitor': additional properties 'enabeld' not allowed"),
    ("wrong-type.yaml", "at '/service/port': got string, want integer"),
    ({"sharding": {"enabled": True, "shards": 0}}, "at '/sharding/shards': minimum: got 0"),
    ({"sharding": {"enabled": True, "shard": 3}},
     "at '/sharding': additional properties 'shard' not allowed"),
])
def test_schema_refuses_typos_and_wrong_types(helm_cli: Any, name: str | dict[str, Any],
                                              message: str) -> None:
    """A misspelt key or a wrong type fails rendering with the path of the culprit."""
    import helm_python

    values = values_file(name) if isinstance(name, str) else name
    with pytest.raises(helm_python.HelmError) as caught:
        helm_cli.render(CHART, values)
    assert message in str(caught.value)
    assert helm_cli.lint(CHART, values, strict=True) != []


def test_schema_knows_the_exporters_config_keys() -> None:
    """The schema's config: keys are exactly the exporter's top-level keys, so a typo there
    fails at install rather than in a crash-looping pod."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["config"]["properties"]) == set(_TOP_KEYS)


def test_chart_version_follows_the_package() -> None:
    """appVersion is the package version, so the default image tag is the matching build."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["appVersion"]) == ("v2", exporter.__version__)


def test_packaged_chart_carries_the_rules_and_dashboards(helm_cli: Any, tmp_path: Path) -> None:
    """`helm package` resolves the chart's link to dashboards/: the archive holds the alert
    rules and every dashboard (and not the screenshot or the Grafana provisioning files), and
    renders the same objects as the directory."""
    import tarfile

    import helm_python

    values = {"prometheusRule": {"enabled": True}, "dashboards": {"enabled": True}}
    with helm_python.Chart.load(str(CHART)) as chart:
        archive = chart.save(str(tmp_path))
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    shipped = {f"smtp-canary-exporter/dashboards/{p.name}"
               for p in (ROOT / "dashboards").glob("*.json")}
    assert shipped | {"smtp-canary-exporter/dashboards/alerts.yaml"} == {
        n for n in names if n.startswith("smtp-canary-exporter/dashboards/")}
    assert helm_cli.render(archive, values) == helm_cli.render(CHART, values)


def test_helm_cli_commands(helm_cli: Any) -> None:
    """The documented commands: `lint --strict` exits 0 on the chart and 1 on a typo, and
    `template` prints the objects `helm template` would, with their sources."""
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "tests" / "chart" / "helm_cli.py"),
                               *args], capture_output=True, text=True, timeout=120,
                              check=False, cwd=ROOT)

    assert run("lint", str(CHART), "--strict").returncode == 0
    typo = run("lint", str(CHART), "--strict", "-f", str(DATA / "typo.yaml"))
    assert typo.returncode == 1 and "enabeld" in typo.stdout
    out = run("template", "mail", str(CHART), "-n", "monitoring",
              "-f", str(DATA / "two-locations.yaml"), "--set", "image.tag=1.2.3")
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"] == [
        "mail-smtp-canary-exporter-eu-west", "mail-smtp-canary-exporter-us-east"]
    assert "# Source: smtp-canary-exporter/templates/deployment.yaml" in out.stdout
    assert "image: \"ghcr.io/smtp-canary-exporter/smtp-canary-exporter:1.2.3\"" in out.stdout


# -- the rendered objects -----------------------------------------------------------------------

def test_defaults_render_a_hardened_working_deployment(
    render: Callable[..., list[dict[str, Any]]], operator_schemas: dict[str, Any]
) -> None:
    """Default values: one Deployment, non-root with a read-only root and no capabilities,
    probes on /-/healthy and /-/ready, state on an emptyDir, and a config the exporter
    itself accepts; nothing optional is rendered."""
    docs = render()
    validate_all(docs, operator_schemas)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "Service",
                                               "ServiceAccount"]
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert c["image"] == f"ghcr.io/smtp-canary-exporter/smtp-canary-exporter:{exporter.__version__}"
    assert c["args"] == ["run", "--config.file=/etc/smtp-canary-exporter/config.yaml",
                         "--web.listen-address=:9925"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert c["resources"]["limits"]["memory"]
    assert {"name": "state", "emptyDir": {}} in pod["volumes"]
    assert {"name": "SMTP_CANARY_INSTANCE", "value": "mail-smtp-canary-exporter"} in c["env"]
    assert "location" not in deployment["spec"]["selector"]["matchLabels"]
    config = parse_config(yaml.safe_dump(rendered_config(docs)), environ={})
    assert [r.name for r in config.relays] == ["gmail-reachability"]
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["port"] == 9925


def test_every_toggle_on(render: Callable[..., list[dict[str, Any]]],
                         operator_schemas: dict[str, Any], tmp_path: Path) -> None:
    """all-on.yaml renders every optional object, each valid; secrets reach the pods only
    through the Secret; the exporter accepts the rendered config with those secrets set."""
    values = values_file("all-on.yaml")
    docs = render(values)
    validate_all(docs, operator_schemas)
    assert sorted({d["kind"] for d in docs}) == [
        "ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "PrometheusRule",
        "Secret", "Service", "ServiceAccount", "ServiceMonitor"]
    config_text = next(d for d in kinds(docs, "ConfigMap") if "config.yaml" in d["data"])
    for secret in values["secret"]["data"].values():
        assert secret not in json.dumps(config_text)
    secret = one(docs, "Secret")
    assert set(secret["data"]) == set(values["secret"]["data"])
    env = dict(values["secret"]["data"])
    parse_config(yaml.safe_dump(rendered_config(docs)), environ=env)
    for deployment in kinds(docs, "Deployment"):
        c = container(deployment)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/config", "checksum/secret", "example.com/team"} <= set(annotations)
        assert c["envFrom"] == [{"secretRef": {"name": "mail-smtp-canary-exporter"}}]
        assert "--log.level=debug" in c["args"]
        assert {"name": "TZ", "value": "UTC"} in c["env"]
        assert {"name": "SMTP_CANARY_INSTANCE", "value": "prod"} in c["env"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["affinity"]["podAntiAffinity"]
        assert pod["priorityClassName"] == "monitoring"
        claim = next(v for v in pod["volumes"] if v["name"] == "state")
        claim_name = claim["persistentVolumeClaim"]["claimName"]
        assert claim_name == deployment["metadata"]["name"] + "-state"
    policy = one(docs, "NetworkPolicy")
    ports = sorted(p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"])
    # DNS (UDP and TCP), the postfix relay, OAuth2 (extra), presets (465, 587), IMAPS.
    assert ports == [53, 53, 443, 465, 587, 993, 2525]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    dashboards = next(d for d in kinds(docs, "ConfigMap") if d["metadata"]["name"].endswith(
        "-dashboards"))
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["metadata"]["annotations"] == {"grafana_folder": "Mail"}
    shipped = sorted(p.name for p in (ROOT / "dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == [f"smtp-canary-exporter-{n}" for n in shipped]
    for name, text in dashboards["data"].items():
        assert "${DS_PROMETHEUS}" not in text, name
        assert json.loads(text)["uid"]
    rule = one(docs, "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "SMTPExporterScrapeMissing" not in {r.get("alert") for r in alerts}
    assert all(r["labels"]["team"] == "mail" for r in alerts)
    assert "SUCCESS" in promtool_check_rules(rule, tmp_path)


def test_two_locations(render: Callable[..., list[dict[str, Any]]],
                       operator_schemas: dict[str, Any]) -> None:
    """One Deployment per location, each pod labelled with its location and told it by flag,
    one Service over both, and the ServiceMonitor turning the label into a target label."""
    docs = render(values_file("two-locations.yaml"))
    validate_all(docs, operator_schemas)
    deployments = {d["metadata"]["name"]: d for d in kinds(docs, "Deployment")}
    assert sorted(deployments) == ["mail-smtp-canary-exporter-eu-west",
                                   "mail-smtp-canary-exporter-us-east"]
    selectors = []
    for location in ("eu-west", "us-east"):
        d = deployments[f"mail-smtp-canary-exporter-{location}"]
        pod = d["spec"]["template"]
        assert pod["metadata"]["labels"]["location"] == location
        assert d["spec"]["selector"]["matchLabels"]["location"] == location
        assert f"--exporter.location={location}" in container(d)["args"]
        assert pod["spec"]["nodeSelector"] == {"topology.kubernetes.io/region":
                                               f"{location[:2]}-{location[3:]}-1"}
        assert d["spec"]["replicas"] == 1
        assert container(d)["envFrom"] == [{"secretRef": {"name": "ses-credentials"}}]
        selectors.append(d["spec"]["selector"]["matchLabels"])
        service_selector = one(docs, "Service")["spec"]["selector"]
        assert service_selector.items() <= pod["metadata"]["labels"].items()
    assert selectors[0] != selectors[1]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["podTargetLabels"] == ["location"]
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    assert not kinds(docs, "Secret")


def test_existing_secret_as_files(render: Callable[..., list[dict[str, Any]]],
                                  operator_schemas: dict[str, Any]) -> None:
    """existingSecret with exposeAs: files mounts that Secret read-only where the config's
    password_file points, and the chart makes no Secret of its own."""
    docs = render(values_file("existing-secret.yaml"))
    validate_all(docs, operator_schemas)
    assert not kinds(docs, "Secret")
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert volume["secret"]["secretName"] == "mail-probe-credentials"
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "secrets")
    assert mount == {"name": "secrets", "mountPath": "/etc/smtp-canary-exporter/secrets",
                     "readOnly": True}
    assert "envFrom" not in container(deployment)
    assert "checksum/secret" not in deployment["spec"]["template"]["metadata"]["annotations"]
    relay = rendered_config(docs)["relays"][0]
    assert relay["auth"]["password_file"].startswith(mount["mountPath"] + "/")


def _shard_env(workload: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container(workload)["env"]
            if e["name"].startswith("SMTP_CANARY_") and "SHARD" in e["name"]}


def test_sharded_statefulset(render: Callable[..., list[dict[str, Any]]],
                             operator_schemas: dict[str, Any]) -> None:
    """sharding renders a StatefulSet of N pods instead of the Deployment, each pod taking
    its shard from its pod-index label and the total from the values; one headless Service
    that the ServiceMonitor scrapes every pod through, a claim per shard from
    volumeClaimTemplates, and a PodDisruptionBudget over the shards."""
    docs = render(values_file("sharded.yaml"))
    validate_all(docs, operator_schemas)
    assert sorted(d["kind"] for d in docs) == [
        "ConfigMap", "PodDisruptionBudget", "Service", "ServiceAccount", "ServiceMonitor",
        "StatefulSet"]
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert _shard_env(sts) == {
        "SMTP_CANARY_SHARD": {"name": "SMTP_CANARY_SHARD", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}}},
        "SMTP_CANARY_TOTAL_SHARDS": {"name": "SMTP_CANARY_TOTAL_SHARDS", "value": "3"},
    }
    pod = sts["spec"]["template"]
    assert "state" not in {v["name"] for v in pod["spec"]["volumes"]}
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "128Mi"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete"
    assert {"name": "state", "mountPath": "/var/lib/smtp-canary-exporter"} in container(
        sts)["volumeMounts"]
    service = one(docs, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == sts["spec"]["selector"]
    config = parse_config(yaml.safe_dump(rendered_config(docs)),
                          environ={"SES_SMTP_PASSWORD": "x"})
    assert len(config.relays) == 4


def test_sharded_in_two_locations(render: Callable[..., list[dict[str, Any]]],
                                  operator_schemas: dict[str, Any]) -> None:
    """Shards and locations together: a StatefulSet of N shards per location, each with its
    own PodDisruptionBudget, its location flag and the shard wiring; without persistence the
    state stays on an emptyDir."""
    values = values_file("two-locations.yaml")
    values["sharding"] = {"enabled": True, "shards": 4, "maxUnavailable": 2}
    docs = render(values)
    validate_all(docs, operator_schemas)
    assert not kinds(docs, "Deployment") and not kinds(docs, "PersistentVolumeClaim")
    sets = {d["metadata"]["name"]: d for d in kinds(docs, "StatefulSet")}
    assert sorted(sets) == ["mail-smtp-canary-exporter-eu-west",
                            "mail-smtp-canary-exporter-us-east"]
    for location in ("eu-west", "us-east"):
        sts = sets[f"mail-smtp-canary-exporter-{location}"]
        assert sts["spec"]["replicas"] == 4
        assert f"--exporter.location={location}" in container(sts)["args"]
        assert _shard_env(sts)["SMTP_CANARY_TOTAL_SHARDS"]["value"] == "4"
        assert {"name": "state", "emptyDir": {}} in sts["spec"]["template"]["spec"]["volumes"]
        assert "volumeClaimTemplates" not in sts["spec"]
    budgets = {d["spec"]["selector"]["matchLabels"]["location"]: d["spec"]["maxUnavailable"]
               for d in kinds(docs, "PodDisruptionBudget")}
    assert budgets == {"eu-west": 2, "us-east": 2}


def test_sharding_refuses_one_claim_for_all_shards(helm_cli: Any) -> None:
    """An existing claim cannot hold every shard's state: rendering fails saying so."""
    import helm_python

    values = {"sharding": {"enabled": True}, "persistence": {"enabled": True,
                                                             "existingClaim": "state"}}
    with pytest.raises(helm_python.HelmError) as caught:
        helm_cli.render(CHART, values)
    assert "persistence.existingClaim: with sharding every shard gets its own claim" in str(
        caught.value)


def test_config_change_rolls_the_pods(render: Callable[..., list[dict[str, Any]]]) -> None:
    """A change to the config changes the pod template's checksum, so Kubernetes rolls it."""
    def checksum(values: dict[str, Any] | None) -> str:
        d = one(render(values), "Deployment")
        return str(d["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    changed = {"config": {"relays": [{"name": "other", "preset": "gmail",
                                      "auth": {"mechanism": "none"}}]}}
    assert checksum(None) != checksum(changed)
    assert checksum(None) == checksum(None)


# -- alert rules --------------------------------------------------------------------------------

def _by_name(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every rule of the groups, keyed by its alert or recorded series name."""
    return {r.get("alert") or r["record"]: r for g in groups for r in g["rules"]}


def _rules(render: Callable[..., list[dict[str, Any]]],
           thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {"prometheusRule": {"enabled": True}}
    if thresholds:
        values["prometheusRule"]["thresholds"] = thresholds
    return one(render(values), "PrometheusRule")


def test_rules_at_defaults_are_alerts_yaml(render: Callable[..., list[dict[str, Any]]],
                                           operator_schemas: dict[str, Any],
                                           tmp_path: Path) -> None:
    """With default thresholds the PrometheusRule carries dashboards/alerts.yaml unchanged,
    and promtool accepts it."""
    rule = _rules(render)
    validate_all([rule], operator_schemas)
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    out = promtool_check_rules(rule, tmp_path)
    count = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in out


@pytest.mark.parametrize(("thresholds", "alert", "expr_has", "text_has"), [
    ({"canaryDeliverySlowSeconds": 120}, "SMTPCanaryDeliverySlow", ") > 120",
     "(threshold 120s)"),
    ({"canaryLostWindow": "2h"}, "SMTPCanaryLost", "[2h]", "in the last 2h"),
    ({"certificateExpiringSoonDays": 21}, "SMTPRelayCertificateExpiringSoon", "< 21 * 86400",
     "within 21 days"),
    ({"certificateExpiringDays": 7}, "SMTPRelayCertificateExpiring", "< 7 * 86400",
     "within 7 days"),
])
def test_an_overridden_threshold_changes_its_rule_only(
    render: Callable[..., list[dict[str, Any]]], tmp_path: Path, thresholds: dict[str, Any],
    alert: str, expr_has: str, text_has: str
) -> None:
    """Overriding one threshold rewrites that alert's expression and the text that quotes
    it; every other rule stays as alerts.yaml has it, and promtool still accepts the rules."""
    rule = _rules(render, thresholds)
    source = _by_name(yaml.safe_load(ALERTS.read_text())["groups"])
    rendered = _by_name(rule["spec"]["groups"])
    assert rendered.keys() == source.keys()
    changed = rendered.pop(alert)
    assert expr_has in changed["expr"] and expr_has not in source[alert]["expr"]
    assert text_has in json.dumps(changed["annotations"])
    expected = copy.deepcopy(source)
    expected.pop(alert)
    assert rendered == expected
    promtool_check_rules(rule, tmp_path)


def _slo_rules(render: Callable[..., list[dict[str, Any]]], slo: dict[str, Any]) -> dict[str, Any]:
    return one(render({"prometheusRule": {"enabled": True, "slo": slo}}), "PrometheusRule")


def test_slo_values_rewrite_the_slo_rules_only(render: Callable[..., list[dict[str, Any]]],
                                               tmp_path: Path) -> None:
    """prometheusRule.slo.objective and .canaryLatencySeconds change every error-budget rule:
    the alerts' thresholds and texts, the canary SLI's histogram bucket and the recorded
    objective; every other rule stays as alerts.yaml has it, and promtool accepts the rules."""
    rule = _slo_rules(render, {"objective": 0.995, "canaryLatencySeconds": 120})
    source = _by_name(yaml.safe_load(ALERTS.read_text())["groups"])
    rendered = _by_name(rule["spec"]["groups"])
    assert rendered.keys() == source.keys()
    slo = {name for name in source if "SLO" in name or "_slo_" in name}
    assert len(slo) == 18
    for name in slo:
        text = json.dumps(rendered[name])
        assert "0.99)" not in text and "0.99\"" not in text and 'le=\\"60.0\\"' not in text, name
    fast = rendered["SMTPCanarySLOFastBurn"]
    assert "> (14.4 * (1 - 0.995))" in fast["expr"]
    assert "the 99.5 % objective" in fast["annotations"]["description"]
    assert "slower than 120 s" in fast["annotations"]["description"]
    ratio = rendered["relay_mailbox:smtp_canary_slo_errors:ratio_rate5m"]["expr"]
    assert 'smtp_canary_delivery_duration_seconds_bucket{le="120.0"}[5m]' in ratio
    assert rendered["relay:smtp_probe_slo_objective:ratio"]["expr"].endswith("+ 0.995")
    assert {k: v for k, v in rendered.items() if k not in slo} == {
        k: v for k, v in source.items() if k not in slo}
    promtool_check_rules(rule, tmp_path)


def test_a_stricter_objective_pages_sooner(render: Callable[..., list[dict[str, Any]]],
                                           tmp_path: Path) -> None:
    """With objective 0.995 and latency 120 s, 12.5 % lost canaries page (above 14.4 x 0.5 %
    = 7.2 %) and canaries taking 90 s are good; at the default objective the same loss does
    not page (below 14.4 %), and at the default latency every 90 s canary is an error."""
    promtool = tools.executable("promtool", "apt-get install prometheus")
    pair = 'job="j",instance="i",relay="ses",mailbox="gmail"'
    series = [
        (f'smtp_canary_received_total{{{pair},folder="inbox"}}', "0+0.875x30"),
        (f'smtp_canary_received_total{{{pair},folder="spam"}}', "0x30"),
        (f"smtp_canary_lost_total{{{pair}}}", "0+0.125x30"),
        # Every canary seen takes 90 s: over 60 s, under 120 s.
        (f'smtp_canary_delivery_duration_seconds_bucket{{{pair},le="60.0"}}', "0x30"),
        (f'smtp_canary_delivery_duration_seconds_bucket{{{pair},le="120.0"}}', "0+0.875x30"),
    ]

    def run(slo: dict[str, Any], ratio: float, fires: bool) -> None:
        rule = _slo_rules(render, slo)
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        alert = _by_name(rule["spec"]["groups"])["SMTPCanarySLOFastBurn"]
        texts = {key: " ".join(value.replace("{{ $labels.relay }}", "ses")
                               .replace("{{ $labels.mailbox }}", "gmail").split())
                 for key, value in alert["annotations"].items()}
        fired = [{"exp_labels": {"severity": "page", "job": "j", "instance": "i",
                                 "relay": "ses", "mailbox": "gmail"},
                  "exp_annotations": texts}]
        tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [{
                "expr": "relay_mailbox:smtp_canary_slo_errors:ratio_rate5m", "eval_time": "10m",
                "exp_samples": [{"labels": "relay_mailbox:smtp_canary_slo_errors:ratio_rate5m"
                                           f"{{{pair}}}", "value": ratio}]}],
            "alert_rule_test": [{"eval_time": "10m", "alertname": "SMTPCanarySLOFastBurn",
                                 "exp_alerts": fired if fires else []}],
        }]}
        (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
        proc = subprocess.run([promtool, "test", "rules", str(tmp_path / "tests.yaml")],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    run({"objective": 0.995, "canaryLatencySeconds": 120}, 0.125, True)
    run({}, 1, True)  # every 90 s canary is late under 60 s: all errors
    run({"canaryLatencySeconds": 120}, 0.125, False)  # 12.5 % < 14.4 x 1 %


@pytest.mark.parametrize(("slo", "message"), [
    ({"canaryLatencySeconds": 45}, "at '/prometheusRule/slo/canaryLatencySeconds': value must "
                                   "be one of"),
    ({"objective": 0.9}, "at '/prometheusRule/slo/objective': minimum: got 0.9, want 0.95"),
    ({"objective": 1}, "at '/prometheusRule/slo/objective': exclusiveMaximum"),
    ({"objective": "99%"}, "at '/prometheusRule/slo/objective': got string, want number"),
])
def test_schema_refuses_slo_values_that_cannot_work(helm_cli: Any, slo: dict[str, Any],
                                                    message: str) -> None:
    """A latency that is no bucket boundary of the delivery histogram (the SLI could not be
    computed), or an objective whose 14.4x fast burn could never fire, fails at install."""
    import helm_python

    with pytest.raises(helm_python.HelmError) as caught:
        helm_cli.render(CHART, {"prometheusRule": {"enabled": True, "slo": slo}})
    assert message in str(caught.value)


def test_schema_latencies_are_the_delivery_buckets() -> None:
    """The latencies the schema allows are exactly the delivery histogram's bucket bounds."""
    from exporter.canary.store import DELIVERY_BUCKETS

    schema = json.loads((CHART / "values.schema.json").read_text())
    slo = schema["properties"]["prometheusRule"]["properties"]["slo"]["properties"]
    assert [float(v) for v in slo["canaryLatencySeconds"]["enum"]] == list(DELIVERY_BUCKETS)


# -- the README ---------------------------------------------------------------------------------

def _leaf_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in {
                "config", "podSecurityContext", "securityContext", "resources",
                "livenessProbe", "readinessProbe"}:
            keys |= _leaf_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def test_readme_documents_every_value() -> None:
    """The chart README's values table has a row for every value, and no row for a value that
    does not exist."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    rows = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    assert rows == _leaf_keys(values)
