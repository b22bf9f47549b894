"""The cause of a known reply reaches the user: probe's text and JSON, and the failure-info
metrics of probes and canary sends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml

from exporter.app import App
from exporter.diagnosis.known import ENTRIES
from tests.conftest import ENV, auth, write_config
from tests.diagnosis.test_known_replies import replaying
from tests.helpers import http, metrics_until, samples
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port, start_scripted
from tests.test_cli import run_cli

HINT_OF = {entry.id: entry.hint for entry in ENTRIES}
SENDGRID = ["550 The from address does not match a verified Sender Identity. Mail cannot be "
            "sent until this error is resolved."]


def test_probe_prints_the_providers_fix(tmp_path: Path, server_loop: ServerLoop) -> None:
    """probe shows Postmark's fix for its refused token, as text and as JSON with the cause."""
    port = start_scripted(server_loop, replaying("auth", ["535 5.7.8 Authentication Failed"]))
    cfg = write_config(tmp_path / "c.yaml",
                       {"name": "pm", "preset": "postmark", "port": port, "tls": "none",
                        "allow_plaintext_auth": True, "auth": auth("plain")})
    text = run_cli("probe", "--config.file", str(cfg))
    assert text.returncode == 1, text.stderr
    assert f"  hint: {HINT_OF['postmark_bad_token']}" in text.stdout.splitlines()
    assert "  cause: postmark_bad_token" in text.stdout.splitlines()
    out = run_cli("probe", "--config.file", str(cfg), "--output", "json")
    result = json.loads(out.stdout)[0]
    assert (result["reason"], result["cause"]) == ("auth_failed", "postmark_bad_token")
    assert result["hint"] == HINT_OF["postmark_bad_token"]


async def test_failure_info_metrics_carry_the_cause(
    tmp_path: Path, server_loop: ServerLoop
) -> None:
    """A canary refused after DATA by SendGrid, and a probe refused at RCPT, both show their
    cause label on their failure-info series, and their cause on the status page."""
    port = start_scripted(server_loop, replaying("data", SENDGRID))
    rcpt = start_scripted(server_loop, replaying("rcpt", ["554 5.7.1 <x@example.test>: "
                                                          "Relay access denied"]))
    doc = {
        "instance": "cause", "state_dir": str(tmp_path / "state"),
        "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": refused_port(),
                       "tls": "implicit", "trusted_authserv_ids": ["mx"],
                       "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}],
        "relays": [
            {"name": "sg", "host": "127.0.0.1", "port": port, "tls": "none",
             "interval": "1h", "timeout": "2s",
             "canary": {"from": "c@example.test", "interval": "1h", "timeout": "10m",
                        "to": [{"address": "to@example.test", "mailbox": "box"}]}},
            {"name": "open", "host": "127.0.0.1", "port": rcpt, "tls": "none",
             "interval": "3s", "timeout": "2s", "rcpt_check": "x@example.test"},
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV)
    app.canaries.first_spread = 1e9
    await app.start()
    try:
        assert app.config is not None and app.web is not None
        sent = await app.canaries.send_once(app.config.relays[0])
        assert sent.cause == "sendgrid_sender_not_verified"
        text = await metrics_until(
            f"http://127.0.0.1:{app.web.port}",
            lambda t: any(k[0] == "smtp_probe_last_failure_info" and ("relay", "open") in k[1]
                          for k in samples(t)),
            what="the probe of relay open to fail")
        canary = {k: v for k, v in samples(text).items()
                  if k[0] == "smtp_canary_send_last_failure_info"}
        assert canary == {("smtp_canary_send_last_failure_info", frozenset({
            ("relay", "sg"), ("reason", "rejected_permanent"), ("phase", "data"),
            ("hint", HINT_OF["sendgrid_sender_not_verified"]),
            ("cause", "sendgrid_sender_not_verified")})): 1.0}
        probe = {dict(k[1])["relay"]: dict(k[1]) for k in samples(text)
                 if k[0] == "smtp_probe_last_failure_info"}
        assert probe["open"]["cause"] == "relay_access_denied"
        assert probe["open"]["phase"] == "rcpt"
        page = (await asyncio.to_thread(http, f"http://127.0.0.1:{app.web.port}/"))[1]
        assert "<small>relay_access_denied</small>" in page
        assert "<small>sendgrid_sender_not_verified</small>" in page
    finally:
        await app.stop()
