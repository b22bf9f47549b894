"""Hostile OAuth2 token endpoints against the real daemon: one drips its answer a byte every
two seconds, one echoes the form's secrets back in every encoding. Neither holds up reload,
SIGTERM or a relay whose own endpoint is healthy, nor costs a thread, nor leaks a secret."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import assert_promtool_accepts, http, value
from tests.servers.loop import ServerLoop
from tests.servers.smtp import TOKEN, USER, start_relay
from tests.servers.tokens import serve_tokens, token_reply
from tests.smtp.hostiletokens import Echo, json_answer, serve_raw
from tests.test_cli import Daemon, port_from_log

# A space, slashes, a plus and an equals sign: raw, quote and quote_plus forms all differ.
SECRETS = {"CLIENT_SECRET": "client secret/Hq7+SECRET=", "REFRESH_TOKEN": "1//refresh-Zt4+SECRET"}
DRIPPING = 6  # as many as the default thread pool of a 2-CPU host (min(32, CPUs + 4))
DRIP = 2.0  # seconds between two bytes of the dripping endpoint's answer
HEALTHY_TOKEN = TOKEN  # what the healthy endpoint issues, and the test relay accepts


def forms(secret: str) -> list[str]:
    """Every form of a secret that must not leave the process."""
    quoted = {urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    return [secret, *quoted, base64.b64encode(secret.encode()).decode()]


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def _relay(name: str, port: int, token_url: str) -> dict[str, Any]:
    return {"name": name, "host": "127.0.0.1", "port": port, "tls": "none",
            "allow_plaintext_auth": True, "interval": "2s", "timeout": "1500ms",
            "auth": {"mechanism": "xoauth2", "username": USER,
                     "oauth2": {"token_url": token_url, "client_id": "cid",
                                "client_secret_env": "CLIENT_SECRET",
                                "refresh_token_env": "REFRESH_TOKEN"}}}


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_hostile_token_endpoints_hold_up_nothing_and_leak_nothing(
    tmp_path: Path, server_loop: ServerLoop, daemons: list[Daemon], fmt: str
) -> None:
    """Six relays whose token endpoint drips, one whose endpoint echoes secrets, one healthy:
    the healthy relay succeeds, the dripping ones fail as auth_failed saying the endpoint did
    not answer in time, the daemon's threads stay flat, reload answers and SIGTERM ends it
    within 5 s, and no secret shows in the log, /metrics, / or /status.json."""
    relay = start_relay(server_loop, ctx=None, starttls=False, auth_require_tls=False)
    with (serve_raw(server_loop, lambda _: json_answer(200, {"access_token": "never"}),
                    drip=DRIP, max_drip=60) as dripping,
          serve_raw(server_loop, Echo()) as echoing, serve_tokens() as healthy):
        healthy.default = token_reply(HEALTHY_TOKEN, expires_in=3600)
        relays = [_relay(f"drip-{i}", relay.port, dripping.url) for i in range(DRIPPING)]
        relays += [_relay("echo", relay.port, echoing.url),
                   _relay("healthy", relay.port, healthy.url)]
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump({"relays": relays}))
        d = Daemon(["run", "--config.file", str(cfg), "--web.listen-address", "127.0.0.1:0",
                    "--log.level", "debug", "--log.format", fmt], tmp_path / "log", env=SECRETS)
        daemons.append(d)
        base = f"http://127.0.0.1:{port_from_log(d)}"
        baseline = threads(d.proc.pid)  # started and serving; the first probes are due

        def probed(times: int) -> bool:
            text = http(base + "/metrics")[1]
            return all((value(text, "smtp_probes_total", relay=r["name"]) or 0) >= times
                       for r in relays)

        most = baseline
        deadline = time.monotonic() + 30
        while not probed(4) and time.monotonic() < deadline:  # ~4 token requests per relay
            most = max(most, threads(d.proc.pid))
            time.sleep(0.3)
        started = time.monotonic()
        reload = http(base + "/-/reload", method="POST", timeout=10)
        reload_took = time.monotonic() - started
        started = time.monotonic()
        text = http(base + "/metrics")[1]
        scrape_took = time.monotonic() - started
        statuses = {r["relay"]: r for r in json.loads(http(base + "/status.json")[1])}
        outputs = [text, http(base + "/")[1], json.dumps(statuses)]
        stop_took = d.stop()
        outputs.append(d.text())
        sent = len(dripping.bodies)

    assert reload[0] == 200 and reload_took < 5, (reload, reload_took)
    assert stop_took < 5, stop_took
    assert scrape_took < 1
    assert_promtool_accepts(text)
    assert most <= baseline + 2, (baseline, most)
    assert sent >= 4 * DRIPPING and dripping.open_max <= DRIPPING + 1, (sent, dripping.open_max)
    assert value(text, "smtp_probe_success", relay="healthy") == 1, statuses["healthy"]
    assert len(healthy.forms) == 1
    for i in range(DRIPPING):
        status = statuses[f"drip-{i}"]
        assert (status["reason"], status["failed_phase"]) == ("auth_failed", "auth"), status
        assert status["detail"].startswith(
            f"OAuth2 token refresh failed: token endpoint {dripping.url} did not answer within "
        ), status
    assert statuses["echo"]["reason"] == "auth_failed"
    assert "invalid_client" in statuses["echo"]["detail"]
    assert "***" in statuses["echo"]["detail"]
    for name, secret in [*SECRETS.items(), ("access token", HEALTHY_TOKEN)]:
        for form in forms(secret):
            for i, output in enumerate(outputs):
                assert form not in output, f"{name} as {form!r} in output {i}"
