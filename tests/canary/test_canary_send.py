"""Canary sends that go wrong: refused recipients, and a relay that falls silent after the
message was handed over (uncertain: still watched, never silently dropped)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml

from exporter.app import App
from exporter.model import Phase, Reason
from tests.conftest import ENV
from tests.helpers import http, value
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port, start_scripted


def silent_after_data(received: list[bytes]) -> Any:
    """EHLO, MAIL, RCPT and DATA answered; the message is read, then no reply ever comes.
    RCPT for nobody@ is refused."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 quiet.example.test\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250 quiet.example.test\r\n")
            elif verb == b"MAIL":
                writer.write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                refused = b"nobody@" in line
                writer.write(b"550 5.1.1 No such user\r\n" if refused else b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                while (body := await reader.readline()) != b".\r\n":
                    received.append(body)
                await asyncio.sleep(3600)
            await writer.drain()

    return handler


def config(tmp_path: Path, port: int, to: list[str]) -> Path:
    doc = {
        "instance": "send", "state_dir": str(tmp_path / "state"),
        "mailboxes": [{"name": name, "host": "127.0.0.1", "port": refused_port(),
                       "tls": "implicit", "trusted_authserv_ids": ["mx"],
                       "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}
                      for name in ("box", "box2")],
        "relays": [{"name": "quiet", "host": "127.0.0.1", "port": port, "tls": "none",
                    "interval": "1h", "timeout": "1500ms",
                    "canary": {"from": "c@example.test", "interval": "1h", "timeout": "10m",
                               "to": [{"address": a, "mailbox": box}
                                      for a, box in zip(to, ("box", "box2"), strict=False)]}}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


async def started(tmp_path: Path, port: int, to: list[str]) -> App:
    app = App(str(config(tmp_path, port, to)), listen=("127.0.0.1", 0), environ=ENV)
    app.canaries.first_spread = 1e9
    await app.start()
    return app


async def test_timeout_after_data_is_uncertain_and_still_watched(
    tmp_path: Path, server_loop: ServerLoop
) -> None:
    """The relay takes the message and never answers: the send is uncertain (reason timeout,
    phase data), counted as sent and uncertain, and the canary stays in flight."""
    received: list[bytes] = []
    port = start_scripted(server_loop, silent_after_data(received))
    app = await started(tmp_path, port, ["a@example.test", "nobody@example.test"])
    try:
        assert app.config is not None
        start = time.monotonic()
        result = await app.canaries.send_once(app.config.relays[0])
        assert time.monotonic() - start < 4
        assert result.uncertain
        assert not result.success
        assert result.reason is Reason.TIMEOUT
        assert result.failed_phase is Phase.DATA
        assert result.accepted == ("a@example.test",)
        assert any(result.token.encode() in line for line in received)
        assert app.canaries.state is not None
        [record] = app.canaries.state.in_flight()
        assert record.uncertain
        assert record.address == "a@example.test"
        web = app.web
        assert web is not None
        text = (await asyncio.to_thread(http, f"http://127.0.0.1:{web.port}/metrics"))[1]
        assert value(text, "smtp_canary_sent_total", relay="quiet") == 1
        assert value(text, "smtp_canary_send_uncertain_total", relay="quiet") == 1
        assert value(text, "smtp_canary_send_failures_total", relay="quiet",
                     reason="timeout") == 1
        assert value(text, "smtp_canary_in_flight", relay="quiet", mailbox="box") == 1
        state_file = tmp_path / "state" / "canaries-send.json"
        assert result.token in state_file.read_text()
    finally:
        await app.stop()


async def test_all_recipients_refused_is_a_failed_send(
    tmp_path: Path, server_loop: ServerLoop
) -> None:
    """Every RCPT refused: the send fails as rejected_permanent with the 550, nothing is
    watched for, and nothing was handed over."""
    received: list[bytes] = []
    port = start_scripted(server_loop, silent_after_data(received))
    app = await started(tmp_path, port, ["nobody@example.test"])
    try:
        assert app.config is not None
        result = await app.canaries.send_once(app.config.relays[0])
        assert not result.success
        assert not result.uncertain
        assert result.reason is Reason.REJECTED_PERMANENT
        assert result.reply == "550 5.1.1 No such user"
        assert received == []
        assert app.canaries.state is not None
        assert app.canaries.state.in_flight() == []
        assert app.web is not None
        text = (await asyncio.to_thread(http, f"http://127.0.0.1:{app.web.port}/metrics"))[1]
        assert value(text, "smtp_canary_sent_total", relay="quiet") == 0
        assert value(text, "smtp_canary_send_failures_total", relay="quiet",
                     reason="rejected_permanent") == 1
    finally:
        await app.stop()
