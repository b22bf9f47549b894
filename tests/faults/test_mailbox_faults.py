"""Mailbox faults: against a real Dovecot, the connection dropped mid-IDLE (through the fault
proxy), login refused, a watched folder deleted; against the in-process IMAP server, 50,000
unrelated messages."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path

import pytest
import yaml

from exporter.app import App
from exporter.demo.imap import DemoIMAPServer
from exporter.demo.mailstore import MailStore
from tests.canary.test_canary import (
    RB,
    Bed,
    metrics,
    send,
    start,
    wait_metric,
    write,
)
from tests.conftest import ENV, auth
from tests.faults.proxy import Fault, FaultProxy
from tests.helpers import eventually, value
from tests.servers.loop import ServerLoop
from tests.servers.mta import StoreRecorder
from tests.servers.smtp import start_relay


def _edit(path: Path, **mailbox: object) -> Path:
    doc = yaml.safe_load(path.read_text())
    doc["mailboxes"][0].update(mailbox)
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_connection_dropped_mid_idle_reconnects(
    tmp_path: Path, bed: Bed, apps: list[App], server_loop: ServerLoop,
) -> None:
    """The proxy resets the watcher's connection while it IDLEs: the mailbox reads down, the
    watcher logs in again, and a canary sent afterwards arrives; the relay never noticed."""
    proxy = FaultProxy(server_loop, bed.dovecot.imaps_port, Fault("pass"))
    try:
        path = _edit(write(tmp_path / "c.yaml", bed), port=proxy.port)
        app, base = await start(apps, path)
        await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up)
        await asyncio.sleep(0.5)  # in IDLE by now
        assert proxy.drop() >= 1
        await eventually(lambda: proxy.connections >= 2, timeout=10)
        await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up, timeout=10)
        await send(app)
        text = await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox",
                                 timeout=15, **RB)
        assert value(text, "smtp_mailbox_up", mailbox="box") == 1
        assert value(text, "smtp_canary_send_failures_total", relay="relay",
                     reason="protocol_error") == 0
    finally:
        proxy.close()


async def test_login_refused_is_reported_and_sending_goes_on(
    tmp_path: Path, bed: Bed, apps: list[App], caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong IMAP password: the mailbox reads down with the server's refusal, canaries are
    still sent (and counted in flight), the relay probe still succeeds; the password that was
    tried appears nowhere."""
    caplog.set_level(logging.INFO)
    path = write(tmp_path / "c.yaml", bed)
    app = App(str(path), listen=("127.0.0.1", 0),
              environ={"RELAY_PASSWORD": "correct horse battery staple",
                       "CANARY_IMAP_PASSWORD": "wrong-imap-pass-5e1f"})
    app.canaries.first_spread = 1e9
    await app.start()
    apps.append(app)
    assert app.web is not None
    base = f"http://127.0.0.1:{app.web.port}"
    await eventually(lambda: (s := app.canary_store.snapshot().mailboxes.get("box")) is not None
                     and s.error is not None, timeout=10)
    status = app.canary_store.snapshot().mailboxes["box"]
    assert not status.up
    assert status.error is not None and "login refused" in status.error
    await send(app)
    text = await metrics(base)
    assert value(text, "smtp_mailbox_up", mailbox="box") == 0
    assert value(text, "smtp_canary_in_flight", **RB) == 1
    assert "wrong-imap-pass-5e1f" not in text + caplog.text


async def test_watched_folder_deleted_under_the_watcher(
    tmp_path: Path, bed: Bed, apps: list[App], caplog: pytest.LogCaptureFixture,
) -> None:
    """A configured folder deleted while the watcher runs is logged as not selectable; the
    mailbox stays up and the next canary is still found in the inbox. (The folders are
    written archive first: the watcher still IDLEs on the inbox.)"""
    caplog.set_level(logging.INFO, logger="exporter.canary.mailbox")
    done = await asyncio.to_thread(bed.dovecot._doveadm, "mailbox", "create", "-u", "canary",
                                   "Archive")
    assert done.returncode == 0, done.stderr
    path = _edit(write(tmp_path / "c.yaml", bed),
                 folders={"inbox": "INBOX", "archive": "Archive"})
    app, base = await start(apps, path)
    await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up)
    done = await asyncio.to_thread(bed.dovecot._doveadm, "mailbox", "delete", "-u", "canary",
                                   "Archive")
    assert done.returncode == 0, done.stderr
    await send(app)
    text = await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox",
                             timeout=15, **RB)
    assert value(text, "smtp_mailbox_up", mailbox="box") == 1
    assert any(r.getMessage() == "folder not selectable" and getattr(r, "folder", "") ==
               "Archive" for r in caplog.records)


DEMO_USER, DEMO_PASSWORD = "canary@demo.test", "demo-imap-pass"


async def test_fifty_thousand_unrelated_messages(
    tmp_path: Path, server_loop: ServerLoop, server_ctx: ssl.SSLContext, ca_file: str,
    apps: list[App],
) -> None:
    """Among 50,000 unrelated messages (the in-process IMAP server, whose every SEARCH reads
    them all) the canary is found by a server-side search, and nothing else is touched."""
    store = MailStore()
    for i in range(50_000):
        store.deliver(DEMO_USER, b"From: a%d@example.org\r\nSubject: unrelated %d\r\n\r\nbody\r\n"
                      % (i, i))
    imap = DemoIMAPServer(store, users={DEMO_USER: DEMO_PASSWORD}, ssl_context=server_ctx)
    server_loop.run(imap.start())
    relay = start_relay(server_loop, ctx=server_ctx,
                        recorder=StoreRecorder(store=store, user=DEMO_USER))
    try:
        doc = {
            "instance": "crowd", "state_dir": str(tmp_path / "state"),
            "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": imap.imaps_port,
                           "tls": "implicit", "ca_file": ca_file, "poll_interval": "1s",
                           "timeout": "30s", "trusted_authserv_ids": ["mx"],
                           "auth": {"username": DEMO_USER, "password_env": "DEMO_IMAP"}}],
            "relays": [{"name": "relay", "host": "127.0.0.1", "port": relay.port,
                        "tls": "starttls", "ca_file": ca_file, "interval": "1h",
                        "timeout": "3s", "auth": auth("plain"),
                        "canary": {"from": "c@example.test", "interval": "1h",
                                   "timeout": "60s",
                                   "to": [{"address": "a@example.test", "mailbox": "box"}]}}],
        }
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(doc))
        app = App(str(path), listen=("127.0.0.1", 0),
                  environ={**ENV, "DEMO_IMAP": DEMO_PASSWORD})
        app.canaries.first_spread = 1e9
        await app.start()
        apps.append(app)
        assert app.web is not None
        base = f"http://127.0.0.1:{app.web.port}"
        await eventually(lambda: app.canary_store.snapshot().mailboxes["box"].up, timeout=30)
        start_at = time.monotonic()
        await send(app)
        await wait_metric(base, "smtp_canary_received_total", 1, folder="inbox", timeout=30,
                          **RB)
        found_in = time.monotonic() - start_at
        assert found_in < 20, found_in
        await eventually(lambda: len(store.messages(DEMO_USER, "INBOX")) == 50_000, timeout=10)
        left = store.messages(DEMO_USER, "INBOX")
        assert all(b"unrelated" in m.raw and "\\Deleted" not in m.flags for m in left)
    finally:
        server_loop.run(imap.stop())
