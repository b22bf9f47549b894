"""A real Prometheus drives /probe with the scrape config README shows: targets from file_sd,
the standard relabelling, a per-target module; and the README's hashmod example is a valid
Prometheus config."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from exporter.app import App
from tests.conftest import ENV, write_config
from tests.helpers import http, value
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port
from tests.servers.smtp import USER, start_relay
from tests.tools import executable

README = Path(__file__).resolve().parents[2] / "README.md"
TARGETS_GLOB = "/etc/prometheus/smtp-targets/*.yaml"
EXPORTER = "smtp-canary-exporter:9925"


def readme_block(marker: str) -> str:
    """The yaml block that follows ``<!-- marker`` in README.md."""
    text = README.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {re.escape(marker)}\b.*?-->\n```yaml\n(.*?)```", text, re.S)
    assert found, f"README.md has no yaml block after <!-- {marker} -->"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    try:
        status, body, _ = http(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    except OSError:  # not listening yet
        return []
    if status != 200:
        return []
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def _start_prometheus(binary: str, tmp: Path, base: str) -> subprocess.Popen[bytes]:
    """Prometheus on ``base`` with tmp/prometheus.yml, its log in tmp/prometheus.log."""
    return subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address={base.removeprefix('http://')}"],
        stdout=(tmp / "prometheus.log").open("wb"), stderr=subprocess.STDOUT)


async def test_prometheus_scrapes_probe_for_two_targets_from_file_sd(
    tmp_path: Path, ca_file: str, server_loop: ServerLoop, server_ctx: ssl.SSLContext,
) -> None:
    """With README's scrape config (only the file_sd path and the exporter's address
    changed), Prometheus probes both targets of the file through /probe, one with the job's
    module and one with its own __param_module: smtp_probe_success is 1 for each, under its
    target as instance."""
    binary = executable("prometheus", "apt-get install prometheus")
    relays = [start_relay(server_loop, ctx=server_ctx) for _ in range(2)]
    modules = {
        "submission": {"ca_file": ca_file,
                       "auth": {"username": USER, "password_env": "RELAY_PASSWORD"}},
        "login": {"ca_file": ca_file, "auth": {"mechanism": "login", "username": USER,
                                               "password_env": "RELAY_PASSWORD"}},
    }
    cfg = write_config(tmp_path / "config.yaml",
                       {"name": "a", "port": refused_port(), "tls": "none", "interval": "1h"},
                       modules=modules)
    app = App(str(cfg), listen=("127.0.0.1", 0), environ=ENV)
    await app.start()
    prom: subprocess.Popen[bytes] | None = None
    try:
        assert app.web is not None
        targets = [f"127.0.0.1:{relay.port}" for relay in relays]
        (tmp_path / "sd").mkdir()
        (tmp_path / "sd" / "mail.yaml").write_text(yaml.safe_dump([
            {"targets": [targets[0]]},
            {"targets": [targets[1]], "labels": {"__param_module": "login"}},
        ]))
        block = readme_block("probe-scrape-config")
        assert TARGETS_GLOB in block and EXPORTER in block
        block = block.replace(TARGETS_GLOB, str(tmp_path / "sd" / "*.yaml"))
        block = block.replace(EXPORTER, f"127.0.0.1:{app.web.port}")
        config = {"global": {"scrape_interval": "2s"}, **yaml.safe_load(block)}
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        base = f"http://127.0.0.1:{_free_port()}"
        prom = _start_prometheus(binary, tmp_path, base)
        found: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(found) < 2:
            rows = await asyncio.to_thread(_query, base, 'smtp_probe_success{job="smtp-probe"}')
            found = {row["metric"]["instance"]: row["value"][1] for row in rows}
            await asyncio.sleep(0.5)
        assert found == {targets[0]: "1", targets[1]: "1"}, (
            found, (tmp_path / "prometheus.log").read_text()[-2000:])
        assert relays[0].recorder.seen_auth[0] == "PLAIN"
        assert relays[1].recorder.seen_auth[0] == "LOGIN"
        metrics = http(f"http://127.0.0.1:{app.web.port}/metrics")[1]
        for module in ("submission", "login"):
            assert (value(metrics, "smtp_exporter_probe_requests_total", module=module,
                          result="success") or 0) >= 1
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(10)
        await app.stop()


def test_readme_hashmod_example_is_a_valid_prometheus_config(tmp_path: Path) -> None:
    """promtool accepts README's hashmod scrape config for several exporters."""
    promtool = executable("promtool", "apt-get install prometheus")
    block = readme_block("probe-hashmod-config")
    assert "action: hashmod" in block and TARGETS_GLOB in block
    (tmp_path / "prometheus.yml").write_text(block)
    proc = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
