"""A restart with canaries in flight: SIGTERM while the message is still held by the relay,
then a new process; the canary is matched with its original send time, none is lost."""

from __future__ import annotations

import json
import signal
import ssl
import time
from pathlib import Path

import yaml

from exporter.demo.imap import DemoIMAPServer
from exporter.demo.mailstore import MailStore
from tests.conftest import auth
from tests.helpers import http, value, wait_for
from tests.servers.loop import ServerLoop
from tests.servers.mta import StoreRecorder
from tests.servers.smtp import start_relay
from tests.test_cli import Daemon, port_from_log

USER, PASSWORD = "canary@demo.test", "restart-imap-pass"


def test_sigterm_with_canaries_in_flight_loses_none(
    tmp_path: Path, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
    daemons: list[Daemon],
) -> None:
    """The first process sends a canary and is stopped by SIGTERM before it arrives; the
    second finds it after the restart, counts it received (not lost, not late), with a
    latency that includes the downtime."""
    store = MailStore()
    imap = DemoIMAPServer(store, users={USER: PASSWORD}, ssl_context=server_ctx)
    server_loop.run(imap.start())
    recorder = StoreRecorder(store=store, user=USER, hold=True)
    relay = start_relay(server_loop, ctx=server_ctx, recorder=recorder)
    try:
        doc = {
            "instance": "restart", "state_dir": str(tmp_path / "state"),
            "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": imap.imaps_port,
                           "tls": "implicit", "ca_file": ca_file, "poll_interval": "1s",
                           "trusted_authserv_ids": ["mx"],
                           "auth": {"username": USER, "password_env": "IMAP_PASSWORD"}}],
            "relays": [{"name": "relay", "host": "127.0.0.1", "port": relay.port,
                        "tls": "starttls", "ca_file": ca_file, "interval": "1h",
                        "timeout": "3s", "auth": auth("plain"),
                        "canary": {"from": "c@example.test", "interval": "1h",
                                   "timeout": "5m",
                                   "to": [{"address": "a@example.test", "mailbox": "box"}]}}],
        }
        cfg = tmp_path / "c.yaml"
        cfg.write_text(yaml.safe_dump(doc))
        env = {"IMAP_PASSWORD": PASSWORD}
        first = Daemon(["run", "--config.file", str(cfg), "--web.listen-address",
                        "127.0.0.1:0"], tmp_path / "log1", env=env)
        daemons.append(first)
        base = f"http://127.0.0.1:{port_from_log(first)}"
        # the first scheduled send comes within the first 10 s (the start spread)
        wait_for(lambda: (value(http(base + "/metrics")[1], "smtp_canary_sent_total",
                                relay="relay") or 0) >= 1, timeout=20)
        assert len(recorder.held) == 1
        sent_at = time.time()
        first.proc.send_signal(signal.SIGTERM)
        first.proc.wait(timeout=15)
        assert first.proc.returncode == 0
        state = json.loads((tmp_path / "state" / "canaries-restart.json").read_text())
        assert len(state["canaries"]) == 1
        time.sleep(2)  # downtime
        recorder.release()
        second = Daemon(["run", "--config.file", str(cfg), "--web.listen-address",
                         "127.0.0.1:0"], tmp_path / "log2", env=env)
        daemons.append(second)
        base = f"http://127.0.0.1:{port_from_log(second)}"
        labels = {"relay": "relay", "mailbox": "box"}
        wait_for(lambda: (value(http(base + "/metrics")[1], "smtp_canary_received_total",
                                folder="inbox", **labels) or 0) >= 1, timeout=20)
        text = http(base + "/metrics")[1]
        latency = value(text, "smtp_canary_last_delivery_duration_seconds", **labels)
        # from the relay's acceptance (before the SIGTERM) to the sighting after the restart
        assert latency is not None and 2.0 <= latency < time.time() - sent_at + 5
        assert value(text, "smtp_canary_lost_total", **labels) == 0
        assert value(text, "smtp_canary_late_total", **labels) == 0
        assert value(text, "smtp_canary_in_flight", **labels) == 0
        assert 'msg="canaries in flight restored" count=1' in second.text()
    finally:
        server_loop.run(imap.stop())
