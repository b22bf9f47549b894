"""No blocking file I/O on the event loop while the exporter runs: every file the daemon opens,
writes, renames or lists in steady running is handled off the loop, so a slow disk cannot
delay a probe's timing. An audit hook records such events from the loop's thread."""

from __future__ import annotations

import asyncio
import ssl
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter.app import App
from tests.conftest import ENV, auth, write_config
from tests.helpers import eventually, http
from tests.servers.loop import ServerLoop
from tests.servers.scripted import refused_port
from tests.servers.smtp import start_relay

# Audit events of file I/O (https://docs.python.org/3/library/audit_events.html).
FILE_EVENTS = frozenset({
    "open", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.listdir", "os.scandir",
    "os.chmod", "os.chown", "os.truncate", "os.utime", "os.link", "os.symlink",
    "shutil.copyfile", "shutil.rmtree", "shutil.move",
})


@dataclass
class LoopFileIO:
    """File I/O events seen on one thread while ``watching``."""

    thread: int = 0
    watching: bool = False
    seen: list[str] = field(default_factory=list)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.watching and event in FILE_EVENTS and threading.get_ident() == self.thread:
            self.watching = False  # the hook's own formatting must not recurse
            try:
                where = "".join(traceback.format_stack(limit=6)[:-1])
                self.seen.append(f"{event} {args[:1]!r}\n{where}")
            finally:
                self.watching = True


_WATCH = LoopFileIO()
sys.addaudithook(_WATCH.hook)  # audit hooks cannot be removed: one, switched on per test


@pytest.fixture
def loop_file_io() -> Iterator[LoopFileIO]:
    """Records file I/O on the running event loop's thread once the test sets ``watching``."""
    _WATCH.thread = threading.get_ident()
    _WATCH.seen.clear()
    try:
        yield _WATCH
    finally:
        _WATCH.watching = False


async def test_the_detector_sees_a_file_opened_on_the_loop(
    loop_file_io: LoopFileIO, tmp_path: Path,
) -> None:
    """The check can fail: a file written from a coroutine is caught, one written from a
    worker thread is not."""
    await asyncio.to_thread(str)  # the worker pool's first start imports its module
    loop_file_io.watching = True
    await asyncio.to_thread((tmp_path / "off-loop").write_text, "fine")
    assert loop_file_io.seen == []
    (tmp_path / "on-loop").write_text("blocks the loop")
    loop_file_io.watching = False
    assert len(loop_file_io.seen) == 1
    assert loop_file_io.seen[0].startswith("open ")


async def test_steady_running_does_no_file_io_on_the_loop(
    loop_file_io: LoopFileIO, tmp_path: Path, server_loop: ServerLoop,
    server_ctx: ssl.SSLContext, ca_file: str,
) -> None:
    """Relays probed every second with STARTTLS and AUTH, canaries sent and saved to the
    state file, DNS checks, /metrics, /status.json and the status page scraped: after the
    first round, a few seconds of running open, write, rename and list no file on the loop."""
    relay = start_relay(server_loop, ctx=server_ctx)
    relays = [{"name": f"r{i}", "port": relay.port, "tls": "starttls", "ca_file": ca_file,
               "auth": auth("plain"), "interval": "1s", "timeout": "900ms",
               "canary": {"from": "c@example.test", "interval": "10s",
                          "to": [{"address": "a@example.test", "mailbox": "box"}]}}
              for i in range(3)]
    path = write_config(tmp_path / "config.yaml", *relays,
                        state_dir=str(tmp_path / "state"),
                        mailboxes=[{"name": "box", "host": "127.0.0.1", "port": refused_port(),
                                    "tls": "implicit", "auth": {
                                        "username": "u", "password_env": "RELAY_PASSWORD"}}])
    app = App(str(path), listen=("127.0.0.1", 0), environ=ENV)
    app.canaries.first_spread = 0
    app.dns.first_spread = 0
    await app.start()
    try:
        assert app.web is not None and app.config is not None
        base = f"http://127.0.0.1:{app.web.port}"
        await asyncio.wait_for(app.scheduler.first_round.wait(), 10)
        await asyncio.wait_for(app.dns.first_round.wait(), 20)
        await eventually(lambda: all(s.sent >= 1 for s in
                                     app.canary_store.snapshot().senders.values()),
                         what="a first canary of each relay")
        probes = sum(r.probes for r in app.store.snapshot().relays.values())
        loop_file_io.watching = True
        for page in ("/metrics", "/status.json", "/", "/metrics"):
            await asyncio.to_thread(http, base + page)
        for canary_relay in app.config.relays:  # as the schedule sends: recorded, saved, sent
            await app.canaries.send_once(canary_relay)
        await asyncio.sleep(3)
        loop_file_io.watching = False
        assert sum(r.probes for r in app.store.snapshot().relays.values()) >= probes + 6
        assert loop_file_io.seen == [], "\n".join(loop_file_io.seen)
    finally:
        loop_file_io.watching = False
        await app.stop()
